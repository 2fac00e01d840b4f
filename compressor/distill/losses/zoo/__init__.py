"""The registered distillation losses (one small module each); importing this package registers them all.

``LOSSES`` maps a name to a :class:`~compressor.distill.losses.zoo.base.LossInfo`; ``compress list losses``
shows them. Every loss is called with one :class:`~compressor.distill.losses.zoo.base.KDBatch`.
"""
from compressor.distill.losses.zoo.base import (
    LOSSES,
    KDBatch,
    KDInputError,
    KDLoss,
    LossInfo,
    register_loss,
)
from compressor.distill.losses.zoo.hooking import (
    HookedFeatures,
    hook_paths,
    loss_feature_paths,
)

# Importing each module registers its loss (the names are the module names).
from compressor.distill.losses.zoo import (  # noqa: F401  isort: skip
    afkd, affinity, attention, dkd, fitnets, hinton, leaf, margin_mse, meal, nd, pld, taid,
)

__all__ = [
    "LOSSES",
    "HookedFeatures",
    "KDBatch",
    "KDInputError",
    "KDLoss",
    "LossInfo",
    "hook_paths",
    "loss_feature_paths",
    "register_loss",
]
