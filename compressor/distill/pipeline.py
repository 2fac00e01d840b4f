"""``compress run``: train (teacher, student, baseline) -> export -> build -> compare -> evaluate through each
engine -> profile -> report -> bundle. Every number in the report is measured in this run."""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from compressor.distill.int8.record import Int8Record
from compressor.distill.int8.stage import Int8Stage
from compressor.distill.recipe import Recipe, TargetChoice
from compressor.distill.report.build import build_run_report, measure_engine
from compressor.distill.report.model import RunReport
from compressor.distill.report.render import write_report
from compressor.distill.tasks import TASKS, RoleModel
from compressor.distill.tasks.base import RunContext
from compressor.targets.base import Artifact
from compressor.targets.onnx import ExportOptions, export_onnx
from compressor.targets.table import load_target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    report: RunReport
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
    complexity = {role: task.complexity(rm.model) for role, rm in roles.items()}
    stage("export to ONNX (dynamic axes verified at batch 1, 2, 3)")
    onnx = {role: _export(task, rm, context.out_dir / "onnx" / f"{role}.onnx", recipe.name)
            for role, rm in roles.items()}
    stage("build engines")
    plan = [("student", c) for c in recipe.deploy.targets]
    plan += [(role, recipe.deploy.reference_target) for role in ("teacher", "baseline")]
    engines = context.out_dir / "engines"
    int8 = Int8Stage(task, recipe.deploy, onnx_dir=context.out_dir / "onnx", engine_dir=engines,
                     seed=context.seed, announce=stage, source=recipe.name)
    gates: dict[str, Int8Record] = {}
    artifacts = []
    for role, choice in plan:
        if choice.precision == "int8":
            built = int8.build(role, onnx[role], roles[role], choice)
            artifact = built.artifact
            gates[str(artifact.path)] = built.record
        else:
            artifact = _build(onnx[role], choice, engines, role, recipe.deploy)
        artifacts.append((role, artifact))
    measured = []
    for role, artifact in artifacts:
        stage(f"compare, evaluate and profile {role} on {artifact.target} {artifact.precision}")
        measured.append(measure_engine(role, artifact, roles[role], task, recipe, int8=gates.get(str(artifact.path))))
    report = build_run_report(recipe, context, task, roles, complexity, measured, time.perf_counter() - started)
    bundle = None
    if recipe.deploy.bundle:
        stage("bundle the student")
        primary = next(a for role, a in artifacts if role == "student")
        profile = next(e.profile for e in report.engines if e.path == str(primary.path))
        from compressor.targets.bundle import create_bundle

        bundle = create_bundle(primary, context.out_dir / "bundle", name=f"{recipe.name}-student",
                               profile=profile, extras=task.bundle_extras()).archive
        report = dataclasses.replace(report, bundle=str(bundle))
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

