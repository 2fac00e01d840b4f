"""Tasks: what a recipe trains and how its metric is measured. ``TASKS`` maps a recipe's ``task`` to a class."""
from compressor.distill.tasks.base import (
    TASKS,
    BundleExtras,
    Evaluation,
    RoleModel,
    Task,
)

__all__ = ["TASKS", "BundleExtras", "Evaluation", "RoleModel", "Task"]


def _register_builtin() -> None:
    from compressor.distill.tasks import (
        generic,  # noqa: F401  (registers "classification" and "embedding")
        ids,  # noqa: F401  (registers "can-intrusion")
        sr,  # noqa: F401  (registers "super-resolution")
        text_embedding,  # noqa: F401  (registers "text-embedding")
        tracking,  # noqa: F401  (registers "tracking")
    )


_register_builtin()
