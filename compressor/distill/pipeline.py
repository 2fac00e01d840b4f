"""``compress run``: train (teacher, student, baseline) -> export -> build -> compare -> evaluate through each
engine -> profile -> report -> bundle. Every number in the report is measured in this run."""
from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from compressor.core.feeds import random_feed, random_feeds
from compressor.core.version import __version__
from compressor.distill.recipe import Recipe, TargetChoice
from compressor.distill.tasks import TASKS, RoleModel
from compressor.distill.tasks.base import RunContext
from compressor.targets.base import Artifact
from compressor.targets.compare import Tolerance, compare_runners
from compressor.targets.onnx import ExportOptions, export_onnx
from compressor.targets.profile import ProfileOptions, profile_runner
from compressor.targets.table import load_target, open_runner
from compressor.targets.torch_runner import TorchRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    report: dict[str, Any]
    bundle: Path | None


def run_recipe(recipe: Recipe, context: RunContext) -> RunResult:
    """Run every stage of ``recipe`` into ``context.out_dir`` and return the report."""
    started = time.perf_counter()
    task = TASKS.get(recipe.task)(recipe.settings, context)
    task.check_inputs()
    stage = Stages(context.stage)
    stage("train teacher, student (with KD) and baseline (without KD)")
    torch.manual_seed(context.seed)
    roles = task.train()
    _save_checkpoints(roles, context.out_dir / "checkpoints")
    models_report = {role: {**task.complexity(rm.model), "origin": rm.origin, "training": rm.training}
                     for role, rm in roles.items()}
    stage("export to ONNX (dynamic axes verified at batch 1, 2, 3)")
    onnx = {role: _export(task, rm, context.out_dir / "onnx" / f"{role}.onnx", recipe.name)
            for role, rm in roles.items()}
    stage("build engines")
    plan = [("student", c) for c in recipe.deploy.targets]
    plan += [(role, recipe.deploy.reference_target) for role in ("teacher", "baseline")]
    engines = context.out_dir / "engines"
    gates: dict[str, dict] = {}
    artifacts, qat = [], {}
    for role, choice in plan:
        if choice.precision == "int8":
            if recipe.deploy.qat_iterations > 0 and role not in qat:
                stage(f"quantization-aware fine-tuning of {role} ({recipe.deploy.qat_iterations} iterations, "
                      f"distilled from its FP32 self)")
                qat[role] = _quantization_aware(task, onnx[role], roles[role], recipe.deploy,
                                                context.out_dir / "onnx" / f"{role}_qat.onnx", recipe.name)
            stage(f"calibrate and quantize {role} for {choice.target} int8 (accuracy gate: "
                  f"{task.metric} drop <= {recipe.deploy.int8_budget})")
            artifact, gate = _build_int8_preferring_qat(task, onnx[role], qat.get(role), roles[role], choice,
                                                        engines, role, recipe.deploy, stage)
            gates[str(artifact.path)] = gate
        else:
            artifact = _build(onnx[role], choice, engines, role, recipe.deploy)
        artifacts.append((role, artifact))
    rows = []
    for role, artifact in artifacts:
        stage(f"compare, evaluate and profile {role} on {artifact.target} {artifact.precision}")
        row = _check_artifact(role, artifact, roles[role], task, recipe)
        if str(artifact.path) in gates:
            row["int8_gate"] = gates[str(artifact.path)]
        rows.append(row)
    for role in roles:
        reference = next(r for r in rows if r["role"] == role and r["target"] == recipe.deploy.reference_target.target
                         and r["precision"] == recipe.deploy.reference_target.precision)
        models_report[role]["metric"] = reference["metric"]
        models_report[role]["metric_engine"] = f"{reference['target']} {reference['precision']}"
    report = _report(recipe, context, models_report, rows, task.metric, time.perf_counter() - started)
    details, details_md = task.report_details(), task.report_markdown()
    if details:
        report["details"] = details
    if details_md:
        report["details_markdown"] = details_md
    bundle = None
    if recipe.deploy.bundle:
        stage("bundle the student")
        primary = next(a for role, a in artifacts if role == "student")
        profile = next(r["profile"] for r in rows if r["path"] == str(primary.path))
        from compressor.targets.bundle import create_bundle

        bundle = create_bundle(primary, context.out_dir / "bundle", name=f"{recipe.name}-student",
                               profile=profile, extras=task.bundle_extras()).archive
        report["bundle"] = str(bundle)
    from compressor.targets.report import write_report

    write_report(report, context.out_dir)
    return RunResult(context.out_dir, report, bundle)


class Stages:
    """Numbered stage announcements."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit, self.count = emit, 0

    def __call__(self, text: str) -> None:
        self.count += 1
        self.emit(f"[{self.count}] {text}")


def _save_checkpoints(roles: dict[str, RoleModel], folder: Path) -> None:
    from compressor.core.files import atomic_path, ensure_writable_dir

    ensure_writable_dir(folder)
    for role, rm in roles.items():
        with atomic_path(folder / f"{role}.pt") as tmp:
            torch.save(rm.model.state_dict(), tmp)


def _export(task, rm: RoleModel, path: Path, recipe_name: str) -> Artifact:
    from compressor.core.files import ensure_writable_dir

    ensure_writable_dir(path.parent)
    return export_onnx(rm.model, task.input_specs(), rm.output_names, path,
                       ExportOptions(source=f"{recipe_name}:{path.stem}"))


def _build(onnx: Artifact, choice: TargetChoice, folder: Path, role: str, deploy) -> Artifact:
    from compressor.core.files import ensure_writable_dir

    ensure_writable_dir(folder)
    return load_target(choice.target).build(onnx.path, precision=choice.precision, out_dir=folder,
                                            name=f"{role}_{choice.target}_{choice.precision}",
                                            options=deploy.target_options(choice))


def _quantization_aware(task, onnx: Artifact, rm: RoleModel, deploy, path: Path, recipe_name: str):
    """The role fine-tuned under INT8 fake quantization (matched to the exporter ``deploy.qat_scheme`` names,
    split Concat -> Conv layers included), exported to ONNX; returns (that ONNX artifact, a report summary)."""
    import tempfile

    import onnx as onnx_lib

    from compressor.distill.qat import QatOptions, quantization_aware_finetune
    from compressor.targets.graph_rewrites import concat_conv_parts
    from compressor.targets.quantize import Int8Options, nncf_half_range_weights, qdq_layer_scales, quantize_qdq

    parts = concat_conv_parts(onnx_lib.load(str(onnx.path), load_external_data=False))
    groups = {name.removesuffix(".weight"): sizes for name, sizes in parts.items()}
    feeds = task.calibration_feeds(deploy.calibration_samples)
    scales = None
    if deploy.qat_scheme == "qdq":  # the exporter's own ranges, to train against
        with tempfile.TemporaryDirectory(prefix="qat-") as tmp:
            qdq = quantize_qdq(onnx.path, Path(tmp) / "ptq.onnx", feeds, Int8Options(method=deploy.calibration_method))
            scales = qdq_layer_scales(qdq)
    half_range = ([name.removesuffix(".weight") for name in nncf_half_range_weights(onnx.path)]
                  if deploy.qat_scheme == "openvino" else [])
    options = QatOptions(iterations=deploy.qat_iterations, lr=deploy.qat_lr, batch=deploy.qat_batch,
                         seed=task.context.seed, float_anchor=deploy.qat_float_anchor, scheme=deploy.qat_scheme)
    model, summary = quantization_aware_finetune(rm.model, feeds, [s.name for s in onnx.inputs], options,
                                                 input_groups=groups, exporter_scales=scales,
                                                 half_range=half_range, desc="qat")
    tuned = RoleModel(model, rm.output_names, f"{rm.origin} + QAT {deploy.qat_iterations} it")
    return _export(task, tuned, path, recipe_name), summary | {"scheme": deploy.qat_scheme}


def qat_scheme_for(choice: TargetChoice) -> str:
    """The QAT scheme that mirrors ``choice``'s INT8 exporter: "openvino" for NNCF, "qdq" otherwise."""
    return "openvino" if choice.target == "openvino" and choice.quantizer == "nncf" else "qdq"


def _build_int8_preferring_qat(task, onnx: Artifact, qat: tuple[Artifact, dict] | None, rm: RoleModel,
                               choice: TargetChoice, folder: Path, role: str, deploy, stage):
    """INT8 through the gate from the QAT export when there is one; when that misses the budget (QAT moved
    the float weights), from the FP32 export instead. The gate record says which was used."""
    if qat is None:
        return _build_int8(task, onnx, rm, choice, folder, role, deploy)
    tuned_onnx, summary = qat
    # the exporter QAT mirrored gets the ranges it trained with (the FP32 model's), not ones re-calibrated
    # on the moved weights; another exporter calibrates as usual
    trained = summary.get("scheme") == qat_scheme_for(choice)
    artifact, gate = _build_int8(task, tuned_onnx, rm, choice, folder, role, deploy, after_qat=True,
                                 ranges_from=onnx.path if trained else None)
    used = gate["passed"]
    if not used:
        stage(f"the QAT model misses the budget on {choice.target}: gate the FP32 export instead")
        artifact, gate = _build_int8(task, onnx, rm, choice, folder, role, deploy)
    return artifact, gate | {"qat": summary | {"used": used, "trained_ranges": trained and used}}


def _build_int8(task, onnx: Artifact, rm: RoleModel, choice: TargetChoice, folder: Path, role: str, deploy,
                after_qat: bool = False, ranges_from: Path | None = None):
    """INT8 through the accuracy gate: the metric drop against the FP32 PyTorch model stays within budget,
    keeping the layers that hurt most in float when it would not. ``after_qat``: ``onnx`` was fine-tuned
    for INT8, so NNCF's bias correction (which would partly undo the training) is off;
    ``ranges_from``: the FP32 ONNX whose activation ranges the fine-tuning trained with, used instead of
    ranges calibrated on ``onnx``."""
    import tempfile

    from compressor.core.files import ensure_writable_dir
    from compressor.targets.accuracy_gate import gate_int8, rank_by_float_gain, rank_sensitive_nodes
    from compressor.targets.quantize import Int8Options, nncf_like_qdq_options, quantize_qdq

    ensure_writable_dir(folder)
    feeds = task.calibration_feeds(deploy.calibration_samples)
    target = load_target(choice.target)
    nncf = choice.target == "openvino" and choice.quantizer == "nncf"
    name = f"{role}_{choice.target}_int8" + ("_nncf" if nncf else "")

    def build(exclude: tuple[str, ...]) -> Artifact:
        return target.build(onnx.path, precision="int8", out_dir=folder, name=name, calibration=feeds,
                            int8=Int8Options(method=deploy.calibration_method, exclude=exclude,
                                             bias_correction=not after_qat,
                                             ranges_from=str(ranges_from) if ranges_from else None),
                            options=deploy.target_options(choice))

    def evaluate(artifact: Artifact) -> float:
        with open_runner(artifact) as runner:
            return task.evaluate(runner)[task.metric]

    def rank(_artifact: Artifact):  # on a Q/DQ model quantized like the artifact (NNCF's placement for NNCF)
        ranges = str(ranges_from) if ranges_from else None
        mirror = (nncf_like_qdq_options(ranges_from=ranges) if nncf
                  else Int8Options(method=deploy.calibration_method, ranges_from=ranges))
        with tempfile.TemporaryDirectory(prefix="rank-") as tmp:
            qdq = quantize_qdq(onnx.path, Path(tmp) / "qdq.onnx", feeds, mirror)
            return (rank_by_float_gain if nncf else rank_sensitive_nodes)(onnx.path, qdq, feeds)

    with TorchRunner(rm.model, onnx.inputs, rm.output_names) as reference_runner:
        reference = task.evaluate(reference_runner)[task.metric]
    artifact, result = gate_int8(build, evaluate, reference=reference, budget=deploy.int8_budget, rank=rank)
    return artifact, result.to_dict() | {"calibration_samples": len(feeds), "method": deploy.calibration_method,
                                         "quantizer": choice.quantizer,
                                         "float_layers": artifact.options.get("float_layers", "fp32")}


def _check_artifact(role: str, artifact: Artifact, rm: RoleModel, task, recipe: Recipe) -> dict[str, Any]:
    deploy = recipe.deploy
    feeds, feeds_kind = _parity_feeds(artifact, task, deploy, recipe.seed)
    profile_specs = task.profile_feed_specs()
    with TorchRunner(rm.model, artifact.inputs, rm.output_names) as ref, \
            open_runner(artifact, threads=deploy.profile_threads) as runner:
        parity = compare_runners(ref, runner, feeds, Tolerance.for_precision(artifact.precision))
        metric = task.evaluate(runner)
        feed = random_feed(profile_specs, batch=None)
        profile = profile_runner(runner, ProfileOptions(batch=profile_specs[0].concrete_shape()[0],
                                                        threads=deploy.profile_threads,
                                                        min_iterations=deploy.profile_iterations,
                                                        min_duration_s=deploy.profile_seconds), feed=feed)
    lat = profile["latency_ms"]
    return {"role": role, "target": artifact.target, "precision": artifact.precision, "path": str(artifact.path),
            "size_bytes": sum((artifact.folder / f).stat().st_size for f in artifact.files),
            "parity": parity.to_dict() | {"inputs": feeds_kind}, "metric": metric,
            "latency_ms": {k: lat[k] for k in ("median", "mean", "p90", "p99", "min", "max")},
            "throughput_fps": profile["throughput_fps"], "cov": profile["cov"], "profile": profile,
            "profile_input": [s.format() for s in profile_specs]}


def _parity_feeds(artifact: Artifact, task, deploy, seed: int) -> tuple[list[dict], str]:
    """Feeds to compare an engine with PyTorch on, and what they are: random inputs over each input's declared
    range, except for INT8, whose activation ranges are calibrated on the task's data and clip what lies
    outside it (agreement on noise says nothing there): samples of that data, batched as the random ones."""
    if artifact.precision != "int8":
        return random_feeds(artifact.inputs, count=deploy.compare_count, batches=deploy.compare_batches,
                           seed=seed), "random"
    import numpy as np

    samples = iter(task.calibration_feeds(deploy.compare_count * sum(deploy.compare_batches)))
    feeds = []
    for batch in deploy.compare_batches:
        for _ in range(deploy.compare_count):
            group = [next(samples) for _ in range(batch)]
            feeds.append({name: np.concatenate([g[name] for g in group]) for name in group[0]})
    return feeds, "task data"


def _qat_iterations(row: dict) -> int:
    """QAT steps behind an INT8 row's artifact (0 when none, or when the gate fell back to the FP32 export)."""
    qat = row.get("int8_gate", {}).get("qat") or {}
    return qat["iterations"] if qat.get("used") else 0


def _precision_matrix(rows: list[dict], fp32_metric: float, metric: str) -> list[dict]:
    """The student through every target x precision: metric (and its change from FP32), parity, latency, size."""
    return [{"target": r["target"], "precision": r["precision"], metric: r["metric"][metric],
             "delta_vs_fp32": r["metric"][metric] - fp32_metric, "parity_passed": r["parity"]["passed"],
             "parity_max_abs": r["parity"]["max_abs"], "latency_median_ms": r["latency_ms"]["median"],
             "latency_p99_ms": r["latency_ms"]["p99"], "size_bytes": r["size_bytes"],
             "kept_in_float": r.get("int8_gate", {}).get("kept_in_float", []),
             "quantizer": r.get("int8_gate", {}).get("quantizer"),
             "float_layers": r.get("int8_gate", {}).get("float_layers"),
             "gate_passed": r.get("int8_gate", {}).get("passed"), "qat_iterations": _qat_iterations(r)}
            for r in rows if r["role"] == "student"]


def _versions() -> dict[str, str]:
    import numpy
    import onnx
    import onnxruntime

    versions = {"edge_compress": __version__, "python": platform.python_version(),
                "torch": torch.__version__, "numpy": numpy.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__}
    try:
        import openvino

        versions["openvino"] = openvino.get_version()
    except ImportError:
        pass
    return versions


def _report(recipe: Recipe, context: RunContext, models: dict, rows: list[dict], metric: str,
            seconds: float) -> dict[str, Any]:
    def latency(role: str) -> float:
        ref = recipe.deploy.reference_target
        return next(r["latency_ms"]["median"] for r in rows
                    if r["role"] == role and r["target"] == ref.target and r["precision"] == ref.precision)

    student, baseline = models["student"]["metric"][metric], models["baseline"]["metric"][metric]
    return {
        "recipe": recipe.name, "recipe_source": recipe.source, "task": recipe.task, "seed": context.seed,
        "quick": context.quick, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": _versions(),
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": torch.get_num_threads()},
        "headline_metric": metric, "models": models,
        "summary": {
            f"student_{metric}": student, f"baseline_{metric}": baseline, f"teacher_{metric}":
                models["teacher"]["metric"][metric], "student_minus_baseline": student - baseline,
            "teacher_to_student_latency_ratio": latency("teacher") / latency("student"),
            "teacher_to_student_params_ratio": models["teacher"]["params"] / models["student"]["params"],
            "all_parity_passed": all(r["parity"]["passed"] for r in rows),
        },
        "artifacts": [{k: v for k, v in r.items() if k != "profile"} | {"protocol": r["profile"]["protocol"]}
                      for r in rows],
        "precision_matrix": _precision_matrix(rows, models["student"]["metric"][metric], metric),
        "wall_seconds": seconds,
    }
