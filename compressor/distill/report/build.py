"""Measuring each engine and assembling the run report from the measurements (every number from this run)."""
from __future__ import annotations

import platform
import time
from typing import Any, Iterable, Mapping

import torch

from compressor.core.feeds import random_feed, random_feeds
from compressor.core.version import __version__
from compressor.distill.int8.record import Int8Record
from compressor.distill.recipe import Recipe, TargetChoice
from compressor.distill.report.model import (
    EngineReport,
    Latency,
    ModelReport,
    Parity,
    PrecisionRow,
    RunReport,
    Summary,
)
from compressor.distill.tasks import RoleModel
from compressor.distill.tasks.base import RunContext
from compressor.targets.base import Artifact
from compressor.targets.compare import Tolerance, compare_runners
from compressor.targets.profile import ProfileOptions, profile_runner
from compressor.targets.table import open_runner
from compressor.targets.torch_runner import TorchRunner


def measure_engine(role: str, artifact: Artifact, rm: RoleModel, task, recipe: Recipe,
                   int8: Int8Record | None = None) -> EngineReport:
    """Compare ``artifact`` with its PyTorch model, evaluate the task metric through it and profile it."""
    deploy = recipe.deploy
    feeds, feeds_kind = parity_feeds(artifact, task, deploy, recipe.seed)
    profile_specs = task.profile_feed_specs()
    with TorchRunner(rm.model, artifact.inputs, rm.output_names) as ref, \
            open_runner(artifact, threads=deploy.profile_threads) as runner:
        parity = compare_runners(ref, runner, feeds, Tolerance.for_precision(artifact.precision))
        evaluation = task.evaluate_with_findings(runner)
        feed = random_feed(profile_specs, batch=None)
        profile = profile_runner(runner, ProfileOptions(batch=profile_specs[0].concrete_shape()[0],
                                                        threads=deploy.profile_threads,
                                                        min_iterations=deploy.profile_iterations,
                                                        min_duration_s=deploy.profile_seconds), feed=feed)
    compared = parity.to_dict()
    return EngineReport(
        role=role, target=artifact.target, precision=artifact.precision, path=str(artifact.path),
        size_bytes=sum((artifact.folder / f).stat().st_size for f in artifact.files),
        parity=Parity(passed=compared.pop("passed"), max_abs=compared.pop("max_abs"), inputs=feeds_kind,
                      details=compared),
        metric=evaluation.metrics, latency=Latency.from_dict(profile["latency_ms"]),
        throughput_fps=profile["throughput_fps"], cov=profile["cov"], profile=profile,
        profile_input=tuple(s.format() for s in profile_specs), int8=int8, evaluation=evaluation)


def parity_feeds(artifact: Artifact, task, deploy, seed: int) -> tuple[list[dict], str]:
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


def reference_engine(engines: Iterable[EngineReport], role: str, reference: TargetChoice) -> EngineReport:
    """``role``'s engine on the reference target and precision (its metric and latency are the model's)."""
    return next(e for e in engines
                if e.role == role and e.target == reference.target and e.precision == reference.precision)


def model_reports(roles: Mapping[str, RoleModel], complexity: Mapping[str, Mapping[str, Any]],
                  engines: tuple[EngineReport, ...], reference: TargetChoice) -> tuple[ModelReport, ...]:
    """Each role with its size (``complexity``: params and MACs) and its metric through the reference engine."""
    out = []
    for role, rm in roles.items():
        engine = reference_engine(engines, role, reference)
        out.append(ModelReport(role=role, params=complexity[role]["params"], macs=complexity[role]["macs"],
                               origin=rm.origin, training=rm.training, metric=engine.metric,
                               metric_engine=f"{engine.target} {engine.precision}"))
    return tuple(out)


def precision_matrix(engines: Iterable[EngineReport], fp32_value: float, metric: str) -> tuple[PrecisionRow, ...]:
    """The student through every target x precision: metric (and its change from FP32), parity, latency, size."""
    rows = []
    for e in engines:
        if e.role != "student":
            continue
        gate = e.int8
        rows.append(PrecisionRow(
            target=e.target, precision=e.precision, metric=metric, value=e.metric[metric],
            delta_vs_fp32=e.metric[metric] - fp32_value, parity_passed=e.parity.passed,
            parity_max_abs=e.parity.max_abs, latency_median_ms=e.latency.median, latency_p99_ms=e.latency.p99,
            size_bytes=e.size_bytes, kept_in_float=gate.kept_in_float if gate else (),
            kept_in_float_modules=_float_layer_modules(e) if gate and gate.kept_in_float else (),
            quantizer=gate.quantizer if gate else None, float_layers=gate.float_layers if gate else None,
            gate_passed=gate.passed if gate else None, qat_iterations=gate.qat_iterations if gate else 0))
    return tuple(rows)


def _float_layer_modules(engine: EngineReport) -> tuple[str, ...]:
    """The layers the gate kept in float, by the PyTorch module the exporter recorded for each ONNX node (none
    when the engine's files are not at hand: the report then names the ONNX nodes only)."""
    from compressor.core.errors import CompressError
    from compressor.distill.report.layers import float_layer_modules

    try:
        source = Artifact.load(engine.path).source
    except CompressError:
        return ()
    return float_layer_modules(engine.int8.kept_in_float, [source])


def summarize(models: tuple[ModelReport, ...], engines: tuple[EngineReport, ...], reference: TargetChoice,
              metric: str) -> Summary:
    """Student vs baseline vs teacher on the headline metric; teacher-to-student latency and size ratios."""
    by_role = {m.role: m for m in models}

    def latency(role: str) -> float:
        return reference_engine(engines, role, reference).latency.median

    return Summary(metric=metric, student=by_role["student"].metric[metric],
                   baseline=by_role["baseline"].metric[metric], teacher=by_role["teacher"].metric[metric],
                   teacher_to_student_latency_ratio=latency("teacher") / latency("student"),
                   teacher_to_student_params_ratio=by_role["teacher"].params / by_role["student"].params,
                   all_parity_passed=all(e.parity.passed for e in engines))


def versions() -> dict[str, str]:
    """Versions of this tool, Python and the libraries every number depends on."""
    import numpy
    import onnx
    import onnxruntime

    found = {"edge_compress": __version__, "python": platform.python_version(),
             "torch": torch.__version__, "numpy": numpy.__version__, "onnx": onnx.__version__,
             "onnxruntime": onnxruntime.__version__}
    try:
        import openvino

        found["openvino"] = openvino.get_version()
    except ImportError:
        pass
    return found


def host() -> dict[str, Any]:
    """The machine the run measured on."""
    return {"machine": platform.machine(), "processor": processor_name(), "cpus": torch.get_num_threads()}


def processor_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name as the profiler records it (:func:`compressor.runtime.measurement.cpu_model`),
    spaces collapsed; the machine type when nothing names the CPU."""
    from compressor.runtime.measurement import cpu_model

    return " ".join(cpu_model(cpuinfo).split()) or platform.machine()


def build_run_report(recipe: Recipe, context: RunContext, task, roles: Mapping[str, RoleModel],
                     complexity: Mapping[str, Mapping[str, Any]], engines: Iterable[EngineReport],
                     seconds: float) -> RunReport:
    """The run report from the measured engines: models, summary and precision matrix computed from them."""
    engines = tuple(engines)
    evaluations = [e.evaluation for e in engines if e.evaluation is not None]
    reference, metric = recipe.deploy.reference_target, task.metric
    models = model_reports(roles, complexity, engines, reference)
    student = next(m for m in models if m.role == "student")
    return RunReport(
        recipe=recipe.name, recipe_source=recipe.source, task=recipe.task, seed=context.seed, quick=context.quick,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), versions=versions(), host=host(), headline_metric=metric,
        models=models, engines=engines, summary=summarize(models, engines, reference, metric),
        precision_matrix=precision_matrix(engines, student.metric[metric], metric), wall_seconds=seconds,
        details=task.report_details(evaluations) or {}, details_markdown=task.report_markdown(evaluations) or "",
        **layer_fields(engines, recipe.deploy))


def layer_fields(engines: Iterable[EngineReport], deploy) -> dict[str, Any]:
    """``layers`` and ``layers_markdown`` of the run report: each student engine profiled layer by layer (ONNX
    Runtime's profiler, OpenVINO's counters), its time attributed to PyTorch modules, and the precision each
    layer executed in audited against what was asked (an INT8 engine's layers kept in float are expected
    float). Nothing when no engine can be profiled per layer here (TensorRT runs where the engine runs)."""
    import logging

    from compressor.core.errors import CompressError
    from compressor.distill.report.layers import layer_section, render_layer_section
    from compressor.targets.layers.profile import LayerOptions, profile_layers

    if deploy.layer_profile_runs == 0:
        return {}
    profiles = []
    for e in engines:
        if e.role != "student":
            continue
        try:
            profiles.append(profile_layers(Artifact.load(e.path), LayerOptions(runs=deploy.layer_profile_runs,
                                                                               threads=deploy.profile_threads)))
        except CompressError as exc:  # e.g. TensorRT, profiled where the engine runs
            logging.getLogger(__name__).warning("no per-layer profile of %s: %s", e.label, exc)
    if not profiles:
        return {}
    section = layer_section(profiles, top=5)
    return {"layers": section.to_dict(), "layers_markdown": "\n".join(render_layer_section(section))}
