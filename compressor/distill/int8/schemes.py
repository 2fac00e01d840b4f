"""Quantization schemes: how one INT8 exporter quantizes, and what the INT8 stage derives from it.

Three exporters: the shared Q/DQ ONNX (:data:`QDQ`: ONNX Runtime, TensorRT, and OpenVINO with ``quantizer:
qdq``), NNCF (:data:`NNCF`: OpenVINO with ``quantizer: nncf``) and ONNX Runtime's dynamic quantization
(:data:`DYNAMIC`: ONNX Runtime with ``quantizer: dynamic``). Each scheme knows the fake quantization
that mirrors it during QAT, the Q/DQ model the accuracy gate ranks layers on and which ranking suits it, its
build settings, and its artifacts' name suffix. A target choice selects its scheme by ``quantizer``
(:func:`scheme_for`); a recipe's ``deploy.qat_scheme`` names the scheme QAT mirrors by its recipe name
(``qdq`` or ``openvino``, :data:`QAT_SCHEMES`).
"""
from __future__ import annotations

import abc
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Sequence

from compressor.core.feeds import Feed
from compressor.core.registry import Registry
from compressor.distill.int8.qat import QatMirror
from compressor.distill.int8.ranges import (
    NNCF_MEAN_MIN_MAX,
    SYMMETRIC_ABSMAX,
    RangeEstimator,
)
from compressor.targets.accuracy_gate import Ranking
from compressor.targets.quantize import Int8Options

if TYPE_CHECKING:
    from compressor.distill.recipe import TargetChoice


class QuantScheme(abc.ABC):
    """One INT8 exporter as the INT8 stage sees it."""

    quantizer: ClassVar[str]  # the name a target choice selects it by
    qat_name: ClassVar[str]  # its name as a recipe's deploy.qat_scheme
    artifact_suffix: ClassVar[str]  # appended to INT8 artifact names
    activations: ClassVar[RangeEstimator]  # how it places and calibrates activation quantizers

    def qat_mirror(self, onnx_path: Path, feeds: Sequence[Feed], method: str) -> QatMirror:
        """The fake quantization that mirrors this exporter on the model exported to ``onnx_path`` (its split
        Concat -> Conv layers included), calibrated on ``feeds`` with ``method`` where the exporter is."""
        import onnx

        from compressor.targets.graph_rewrites import concat_conv_parts

        parts = concat_conv_parts(onnx.load(str(onnx_path), load_external_data=False))
        groups = {name.removesuffix(".weight"): sizes for name, sizes in parts.items()}
        return QatMirror(self.activations, groups, self._exporter_scales(onnx_path, feeds, method),
                         tuple(self._half_range_layers(onnx_path)))

    def build_options(self, method: str, exclude: tuple[str, ...] = (), *, after_qat: bool = False,
                      ranges_from: Path | None = None) -> Int8Options:
        """INT8 build settings: ``exclude`` kept in float; ``after_qat``: the model was fine-tuned for INT8, so
        bias correction (which would partly undo the training) is off; ``ranges_from``: the FP32 ONNX whose
        activation ranges the fine-tuning trained with, used instead of ranges calibrated on the model."""
        return Int8Options(method=method, exclude=exclude, bias_correction=not after_qat,
                           ranges_from=str(ranges_from) if ranges_from else None)

    def rank_layers(self, onnx_path: Path, feeds: Sequence[Feed], method: str,
                    ranges_from: Path | None = None) -> Ranking:
        """The accuracy gate's ranking of ``onnx_path``'s nodes, measured on a Q/DQ model quantized as this
        exporter quantizes (with ``ranges_from``'s activation ranges when given)."""
        from compressor.targets.quantize import quantize_qdq

        with tempfile.TemporaryDirectory(prefix="rank-") as tmp:
            qdq = quantize_qdq(onnx_path, Path(tmp) / "qdq.onnx", feeds, self.ranking_options(method, ranges_from))
            return self.rank(onnx_path, qdq, feeds)

    @abc.abstractmethod
    def ranking_options(self, method: str, ranges_from: Path | None = None) -> Int8Options:
        """Q/DQ settings that err where this exporter errs (the model the gate ranks layers on)."""

    @abc.abstractmethod
    def rank(self, fp32_path: Path, qdq_path: Path, feeds: Sequence[Feed]) -> Ranking:
        """Nodes ranked for keeping in float, from the FP32 model and its mirroring Q/DQ model."""

    def _exporter_scales(self, onnx_path: Path, feeds: Sequence[Feed], method: str) -> dict | None:
        """The exporter's own activation scales for QAT to train against (None: QAT calibrates min-max)."""
        return None

    def _half_range_layers(self, onnx_path: Path) -> list[str]:
        """Module names whose weights the exporter quantizes with half the 8-bit range."""
        return []

    def __repr__(self) -> str:
        return f"<{self.quantizer} quantization scheme>"


class QdqScheme(QuantScheme):
    """The shared Q/DQ ONNX (ONNX Runtime's quantizer): symmetric int8 activations at every quantized layer's
    input and output, the calibration method's ranges; excluding a node still leaves its input quantized, so
    nodes are ranked by the error they add (:func:`compressor.targets.accuracy_gate.rank_sensitive_nodes`)."""

    quantizer = "qdq"
    qat_name = "qdq"
    artifact_suffix = ""
    activations = SYMMETRIC_ABSMAX

    def ranking_options(self, method: str, ranges_from: Path | None = None) -> Int8Options:
        return Int8Options(method=method, ranges_from=str(ranges_from) if ranges_from else None)

    def rank(self, fp32_path: Path, qdq_path: Path, feeds: Sequence[Feed]) -> Ranking:
        from compressor.targets.accuracy_gate import rank_sensitive_nodes

        return rank_sensitive_nodes(fp32_path, qdq_path, feeds)

    def _exporter_scales(self, onnx_path: Path, feeds: Sequence[Feed], method: str) -> dict[str, dict[str, float]]:
        from compressor.targets.quantize import qdq_layer_scales, quantize_qdq

        with tempfile.TemporaryDirectory(prefix="qat-") as tmp:
            return qdq_layer_scales(quantize_qdq(onnx_path, Path(tmp) / "ptq.onnx", feeds, Int8Options(method=method)))


class NncfScheme(QuantScheme):
    """NNCF for OpenVINO: asymmetric activations at layer inputs only, min-max ranges, half the weight range
    on the first convs where the CPU lacks VNNI; an excluded node reads float, so nodes are ranked by the
    accuracy each gives back in float per share of the work
    (:func:`compressor.targets.accuracy_gate.rank_by_float_gain`)."""

    quantizer = "nncf"
    qat_name = "openvino"
    artifact_suffix = "_nncf"
    activations = NNCF_MEAN_MIN_MAX

    def ranking_options(self, method: str, ranges_from: Path | None = None) -> Int8Options:
        from compressor.targets.openvino.nncf import nncf_like_qdq_options

        return nncf_like_qdq_options(ranges_from=str(ranges_from) if ranges_from else None)

    def rank(self, fp32_path: Path, qdq_path: Path, feeds: Sequence[Feed]) -> Ranking:
        from compressor.targets.accuracy_gate import rank_by_float_gain

        return rank_by_float_gain(fp32_path, qdq_path, feeds)

    def _half_range_layers(self, onnx_path: Path) -> list[str]:
        from compressor.targets.openvino.nncf import nncf_half_range_weights

        return [name.removesuffix(".weight") for name in nncf_half_range_weights(onnx_path)]


class DynamicScheme(QuantScheme):
    """ONNX Runtime's dynamic quantization (ONNX Runtime with ``quantizer: dynamic``): int8 weights per channel,
    activations quantized per call from their own range, so nothing is calibrated or clipped. Nodes are ranked
    by the error each adds, measured on the dynamic model itself. No QAT mirrors it (there are no trained
    activation ranges to mirror)."""

    quantizer = "dynamic"
    qat_name = "dynamic"
    artifact_suffix = "_dynamic"
    activations = SYMMETRIC_ABSMAX  # unused: no QAT scheme is registered for it

    def ranking_options(self, method: str, ranges_from: Path | None = None) -> Int8Options:
        return Int8Options(method=method)

    def rank_layers(self, onnx_path: Path, feeds: Sequence[Feed], method: str,
                    ranges_from: Path | None = None) -> Ranking:
        from compressor.targets.quantize import quantize_dynamic_int8

        with tempfile.TemporaryDirectory(prefix="rank-") as tmp:
            return self.rank(onnx_path, quantize_dynamic_int8(onnx_path, Path(tmp) / "dynamic.onnx"), feeds)

    def rank(self, fp32_path: Path, qdq_path: Path, feeds: Sequence[Feed]) -> Ranking:
        from compressor.targets.accuracy_gate import rank_sensitive_nodes

        return rank_sensitive_nodes(fp32_path, qdq_path, feeds)


QDQ = QdqScheme()
NNCF = NncfScheme()
DYNAMIC = DynamicScheme()

QUANTIZERS: Registry[QuantScheme] = Registry("quantizer")
QAT_SCHEMES: Registry[QuantScheme] = Registry("QAT scheme")
for _scheme in (QDQ, NNCF, DYNAMIC):
    QUANTIZERS.register(_scheme.quantizer)(_scheme)
for _scheme in (QDQ, NNCF):
    QAT_SCHEMES.register(_scheme.qat_name)(_scheme)

SCHEMES = tuple(scheme.qat_name for scheme in (QDQ, NNCF))  # deploy.qat_scheme's values, as recipes list them


def scheme_for(choice: TargetChoice) -> QuantScheme:
    """The scheme that quantizes for ``choice``: the one its ``quantizer`` names. The target's options class says
    whether it takes a quantizer at all (targets without the option use the shared Q/DQ exporter, ``qdq``);
    another quantizer for such a target is a one-line error from that class."""
    if choice.quantizer != QDQ.quantizer:
        from compressor.targets.table import options_class

        options_class(choice.target).from_mapping({"quantizer": choice.quantizer})
    return QUANTIZERS.get(choice.quantizer)


def qat_scheme(name: str) -> QuantScheme:
    """The scheme a recipe's ``deploy.qat_scheme`` (``qdq`` or ``openvino``) names."""
    return QAT_SCHEMES.get(name)
