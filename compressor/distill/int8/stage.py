"""The INT8 stage of a run: quantization-aware fine-tuning (once per role) and INT8 engines through the accuracy
gate, preferring the fine-tuned model and falling back to the FP32 export when that misses the budget. With a
stage cache, a build whose inputs are unchanged (the FP32 ONNX, the deploy INT8 options, the calibration data,
the task's settings and data, the runtimes' versions) is taken from an earlier run with its gate record."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from compressor.distill.int8.qat import QatOptions, quantization_aware_finetune
from compressor.distill.int8.record import Int8Record, QatRecord
from compressor.distill.int8.schemes import QuantScheme, qat_scheme, scheme_for
from compressor.distill.recipe import DeployConfig, TargetChoice
from compressor.distill.stage_cache import (
    Reuse,
    StageCache,
    feeds_digest,
    files_digest,
    model_identity,
    package_versions,
    plain,
)
from compressor.distill.tasks.base import RoleModel, Task
from compressor.targets.accuracy_gate import Ranking
from compressor.targets.base import Artifact


@dataclass(frozen=True)
class Int8Source:
    """The ONNX the gate quantizes: the FP32 export, or a QAT export (``after_qat``), with ``ranges_from`` the
    FP32 export whose activation ranges the fine-tuning trained with (None: calibrate ``onnx`` itself)."""

    onnx: Artifact
    after_qat: bool = False
    ranges_from: Path | None = None


@dataclass(frozen=True)
class QatExport:
    """A role fine-tuned for INT8 and exported to ONNX: the scheme it mirrored and what the fine-tuning did."""

    artifact: Artifact
    scheme: QuantScheme
    record: QatRecord


@dataclass(frozen=True)
class Int8Build:
    """An INT8 engine and the gate's record of it; ``reused``: taken from the stage cache (the record is then
    the one measured by the run that built it)."""

    artifact: Artifact
    record: Int8Record
    reused: Reuse | None = None


# deploy settings that do not change an INT8 build (what is measured, bundled or selected afterwards); every
# other deploy setting is part of an INT8 build's cache key
NOT_INT8_SETTINGS = frozenset({"targets", "reference_target", "compare_batches", "compare_count", "profile_seconds",
                               "profile_iterations", "profile_threads", "layer_profile_runs", "bundle", "select",
                               "select_budget"})
INT8_PACKAGES = ("onnxruntime", "onnx", "nncf", "openvino", "torch")  # quantizers and QAT besides the target


class Int8Stage:
    """Builds a run's INT8 engines for ``task`` as ``deploy`` says: QAT exports go to ``onnx_dir`` (one per
    role, fine-tuned with ``seed``), engines to ``engine_dir``; ``announce`` hears each step; ``source`` names
    the exports' origin (the recipe). With ``cache``, builds are reused and stored under keys that include
    ``run_key`` (the task's settings and data, on which the gate's evaluation depends)."""

    def __init__(self, task: Task, deploy: DeployConfig, *, onnx_dir: Path, engine_dir: Path, seed: int,
                 announce: Callable[[str], None] = lambda _text: None, source: str = "",
                 cache: StageCache | None = None, run_key: str = "") -> None:
        self.task, self.deploy = task, deploy
        self.onnx_dir, self.engine_dir, self.seed = onnx_dir, engine_dir, seed
        self.announce, self.source = announce, source
        self.cache, self.run_key = cache, run_key
        self._finetuned: dict[str, QatExport] = {}
        self._calibration: str | None = None

    def build(self, role: str, onnx: Artifact, role_model: RoleModel, choice: TargetChoice) -> Int8Build:
        """``role``'s INT8 engine for ``choice`` through the accuracy gate. With QAT (``deploy.qat_iterations >
        0``): from the QAT export, quantized with the ranges it trained with when its scheme is ``choice``'s;
        when that misses the budget, from the FP32 export ``onnx`` instead. The record says which was used.
        An unchanged build is taken from the stage cache (``reused`` says so), a new one is stored there."""
        if self.cache is None:
            return self._build(role, onnx, role_model, choice)
        key = self.cache.key("int8", self.cache_inputs(role, onnx, role_model, choice))
        hit = self.cache.fetch("int8", key)
        if hit is not None:
            from compressor.distill.report.read import int8_record_from_dict

            return Int8Build(hit.artifacts["main"], int8_record_from_dict(dict(hit.record)), reused=hit.reuse)
        built = self._build(role, onnx, role_model, choice)
        kept = {"main": built.artifact}
        if role in self._finetuned:  # the QAT export the engine names as its source
            kept["qat"] = self._finetuned[role].artifact
        self.cache.store("int8", key, kept, built.record.to_dict())
        return built

    def cache_inputs(self, role: str, onnx: Artifact, role_model: RoleModel, choice: TargetChoice) -> dict[str, Any]:
        """Everything an INT8 build of ``role`` for ``choice`` reads: the FP32 ONNX (by content) and the model
        (QAT fine-tunes it), the deploy settings that shape the build, the target's options, the calibration
        data (by content), the task's settings and data (``run_key``: the gate evaluates on them), the seed and
        the runtimes' versions."""
        from compressor.targets.table import target_info

        if self._calibration is None:
            self._calibration = feeds_digest(self.task.calibration_feeds(self.deploy.calibration_samples))
        settings = {f.name: plain(getattr(self.deploy, f.name)) for f in dataclasses.fields(self.deploy)
                    if f.name not in NOT_INT8_SETTINGS}
        return {"role": role, "onnx": files_digest(onnx), "model": model_identity(role_model.model),
                "outputs": list(role_model.output_names), "target": choice.target, "quantizer": choice.quantizer,
                "options": plain(self.deploy.target_options(choice)), "deploy": settings,
                "calibration": self._calibration, "run": self.run_key, "seed": self.seed, "metric": self.task.metric,
                "versions": package_versions((*target_info(choice.target).packages, *INT8_PACKAGES))}

    def _build(self, role: str, onnx: Artifact, role_model: RoleModel, choice: TargetChoice) -> Int8Build:
        finetuned = self.finetune(role, onnx, role_model) if self.deploy.qat_iterations > 0 else None
        self.announce(f"calibrate and quantize {role} for {choice.target} int8 (accuracy gate: "
                      f"{self.task.metric} drop <= {self.deploy.int8_budget})")
        if finetuned is None:
            return self.gate(role, Int8Source(onnx), role_model, choice)
        # the exporter QAT mirrored gets the ranges it trained with (the FP32 model's), not ones re-calibrated
        # on the moved weights; another exporter calibrates as usual
        trained = finetuned.scheme is scheme_for(choice)
        built = self.gate(role, Int8Source(finetuned.artifact, after_qat=True,
                                           ranges_from=onnx.path if trained else None), role_model, choice)
        used = built.record.passed
        if not used:
            self.announce(f"the QAT model misses the budget on {choice.target}: gate the FP32 export instead")
            built = self.gate(role, Int8Source(onnx), role_model, choice)
        qat = dataclasses.replace(finetuned.record, used=used, trained_ranges=trained and used)
        return Int8Build(built.artifact, dataclasses.replace(built.record, qat=qat))

    def finetune(self, role: str, onnx: Artifact, role_model: RoleModel) -> QatExport:
        """``role`` fine-tuned under the INT8 fake quantization of ``deploy.qat_scheme`` (mirroring the exporter
        on ``onnx``, split Concat -> Conv layers included) and exported; once per role."""
        if role not in self._finetuned:
            self.announce(f"quantization-aware fine-tuning of {role} ({self.deploy.qat_iterations} iterations, "
                          f"distilled from its FP32 self)")
            self._finetuned[role] = self._finetune(role, onnx, role_model)
        return self._finetuned[role]

    def gate(self, role: str, source: Int8Source, role_model: RoleModel, choice: TargetChoice) -> Int8Build:
        """INT8 of ``source`` through the accuracy gate: the metric drop against the FP32 PyTorch model stays
        within ``deploy.int8_budget``, keeping the layers that hurt most in float when it would not."""
        from compressor.core.files import ensure_writable_dir
        from compressor.targets.accuracy_gate import gate_int8
        from compressor.targets.table import load_target, open_runner
        from compressor.targets.torch_runner import TorchRunner

        deploy, task = self.deploy, self.task
        ensure_writable_dir(self.engine_dir)
        feeds = task.calibration_feeds(deploy.calibration_samples)
        target = load_target(choice.target)
        scheme = scheme_for(choice)
        name = f"{role}_{choice.target}_int8{scheme.artifact_suffix}"

        def build(exclude: tuple[str, ...]) -> Artifact:
            int8 = scheme.build_options(deploy.calibration_method, exclude, after_qat=source.after_qat,
                                        ranges_from=source.ranges_from)
            return target.build(source.onnx.path, precision="int8", out_dir=self.engine_dir, name=name,
                                calibration=feeds, int8=int8, options=deploy.target_options(choice))

        def evaluate(artifact: Artifact) -> float:
            with open_runner(artifact) as runner:
                return task.evaluate(runner)[task.metric]

        def rank(_artifact: Artifact) -> Ranking:
            return scheme.rank_layers(source.onnx.path, feeds, deploy.calibration_method, source.ranges_from)

        with TorchRunner(role_model.model, source.onnx.inputs, role_model.output_names) as reference_runner:
            reference = task.evaluate(reference_runner)[task.metric]
        artifact, result = gate_int8(build, evaluate, reference=reference, budget=deploy.int8_budget, rank=rank)
        record = Int8Record(reference_metric=result.reference, budget=result.budget, passed=result.passed,
                            kept_in_float=tuple(result.kept_in_float), tries=tuple(result.tries),
                            calibration_samples=len(feeds), method=deploy.calibration_method,
                            quantizer=choice.quantizer, float_layers=artifact.options.get("float_layers", "fp32"))
        return Int8Build(artifact, record)

    def _finetune(self, role: str, onnx: Artifact, role_model: RoleModel) -> QatExport:
        deploy = self.deploy
        scheme = qat_scheme(deploy.qat_scheme)
        feeds = self.task.calibration_feeds(deploy.calibration_samples)
        mirror = scheme.qat_mirror(onnx.path, feeds, deploy.calibration_method)
        options = QatOptions(iterations=deploy.qat_iterations, lr=deploy.qat_lr, batch=deploy.qat_batch,
                             seed=self.seed, float_anchor=deploy.qat_float_anchor)
        result = quantization_aware_finetune(role_model.model, feeds, [s.name for s in onnx.inputs], options, mirror,
                                             desc="qat")
        origin = f"{role_model.origin} + QAT {deploy.qat_iterations} it"
        tuned = RoleModel(result.model, role_model.output_names, origin)
        return QatExport(self._export(tuned, self.onnx_dir / f"{role}_qat.onnx"), scheme,
                         result.to_record(scheme.qat_name))

    def _export(self, role_model: RoleModel, path: Path) -> Artifact:
        """``role_model`` exported to ``path`` with the task's inputs, as the run exports its roles."""
        from compressor.core.files import ensure_writable_dir
        from compressor.targets.onnx import ExportOptions, export_onnx

        ensure_writable_dir(path.parent)
        return export_onnx(role_model.model, self.task.input_specs(), role_model.output_names, path,
                           ExportOptions(source=f"{self.source}:{path.stem}"))
