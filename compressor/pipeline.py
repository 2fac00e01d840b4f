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

import compressor
from compressor.recipe import Recipe, TargetChoice
from compressor.tasks import TASKS, RoleModel
from compressor.tasks.base import RunContext
from targets.base import Artifact
from targets.compare import Tolerance, compare_runners
from targets.inputs import random_feed, random_feeds
from targets.onnx import ExportOptions, export_onnx
from targets.profile import ProfileOptions, profile_runner
from targets.table import load_target, open_runner
from targets.torch_runner import TorchRunner

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
    artifacts = [(role, _build(onnx[role], choice, context.out_dir / "engines", role)) for role, choice in plan]
    rows = []
    for role, artifact in artifacts:
        stage(f"compare, evaluate and profile {role} on {artifact.target} {artifact.precision}")
        rows.append(_check_artifact(role, artifact, roles[role], task, recipe))
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
        from targets.bundle import create_bundle

        bundle = create_bundle(primary, context.out_dir / "bundle", name=f"{recipe.name}-student",
                               profile=profile, extras=task.bundle_extras()).archive
        report["bundle"] = str(bundle)
    from targets.report import write_report

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
    from targets.files import atomic_path, ensure_writable_dir

    ensure_writable_dir(folder)
    for role, rm in roles.items():
        with atomic_path(folder / f"{role}.pt") as tmp:
            torch.save(rm.model.state_dict(), tmp)


def _export(task, rm: RoleModel, path: Path, recipe_name: str) -> Artifact:
    from targets.files import ensure_writable_dir

    ensure_writable_dir(path.parent)
    return export_onnx(rm.model, task.input_specs(), rm.output_names, path,
                       ExportOptions(source=f"{recipe_name}:{path.stem}"))


def _build(onnx: Artifact, choice: TargetChoice, folder: Path, role: str) -> Artifact:
    from targets.files import ensure_writable_dir

    ensure_writable_dir(folder)
    return load_target(choice.target).build(onnx.path, precision=choice.precision, out_dir=folder,
                                            name=f"{role}_{choice.target}_{choice.precision}")


def _check_artifact(role: str, artifact: Artifact, rm: RoleModel, task, recipe: Recipe) -> dict[str, Any]:
    deploy = recipe.deploy
    feeds = random_feeds(artifact.inputs, count=deploy.compare_count, batches=deploy.compare_batches,
                         seed=recipe.seed)
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
            "parity": parity.to_dict(), "metric": metric,
            "latency_ms": {k: lat[k] for k in ("median", "mean", "p90", "p99", "min", "max")},
            "throughput_fps": profile["throughput_fps"], "cov": profile["cov"], "profile": profile,
            "profile_input": [s.format() for s in profile_specs]}


def _versions() -> dict[str, str]:
    import numpy
    import onnx
    import onnxruntime

    versions = {"edge_compress": compressor.__version__, "python": platform.python_version(),
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
        "wall_seconds": seconds,
    }
