"""``compress run``: train (teacher, student, baseline) -> export -> build -> compare -> evaluate through each
engine -> profile -> report -> bundle. Every number in the report is measured in this run."""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from compressor.core.files import (
    atomic_path,
    ensure_writable_dir,
    errors_named_at,
    publish_entries,
    staging_dir,
    temp_files_in,
    write_json,
)
from compressor.core.interrupts import terminate_as_interrupt
from compressor.distill.distributed import DistContext, context_from_env, process_group
from compressor.distill.int8.record import Int8Record
from compressor.distill.int8.stage import Int8Stage
from compressor.distill.progress import StageLog
from compressor.distill.recipe import Recipe, TargetChoice
from compressor.distill.report.build import build_run_report, measure_engine
from compressor.distill.report.model import RunReport
from compressor.distill.report.render import write_report
from compressor.distill.select import (
    SelectionError,
    SelectionRecord,
    plan_targets,
    select_for_run,
)
from compressor.distill.stage_cache import (
    CACHE_DIR,
    Reuse,
    StageCache,
    files_digest,
    model_identity,
    package_versions,
    plain,
)
from compressor.distill.tasks import TASKS, RoleModel
from compressor.distill.tasks.base import RunContext
from compressor.distill.train_runtime import (
    TrainingRuntime,
    resolve_device,
    resolve_precision,
    training_runtime,
)
from compressor.distill.training_inputs import STUDENT_SECTIONS, training_key
from compressor.targets.base import SIDECAR_SUFFIX, Artifact
from compressor.targets.onnx import ExportOptions, export_onnx
from compressor.targets.table import load_target

log = logging.getLogger(__name__)


# What a run writes into its folder; a new run replaces all of them together (report files last), so no entry
# of an older run (an engine of a target no longer listed, a stale bundle) is left looking current.
RUN_ENTRIES = ("checkpoints", "onnx", "engines", "bundle")
REPORT_FILES = ("report.json", "report.md", "report.html")
STAGING_PREFIX = ".run-"
TRAIN_STATE_DIR = Path(CACHE_DIR) / "train"  # training checkpoints: resumable, and reused by unchanged reruns
SELECTION_FILE = "selection.json"  # in the bundle: which engine it holds and why (deploy.select)


@dataclass(frozen=True)
class RunResult:
    """A finished run: its report, the bundle (when made) and the engine ``deploy.select`` chose for it."""

    out_dir: Path
    report: RunReport
    bundle: Path | None
    selection: SelectionRecord | None = None


def run_recipe(recipe: Recipe, context: RunContext) -> RunResult | None:
    """Run every stage of ``recipe`` into ``context.out_dir`` and return the report (None on a torchrun worker
    other than rank 0: it trains with the others, and rank 0 alone writes the run).

    The run is written into a fresh staging folder inside the run folder (``.run-XXXX.tmp``, its temporary files
    too) and replaces the previous run's checkpoints, ONNX files, engines, bundle and report only when every
    stage succeeded. A run that fails or is interrupted (Ctrl-C, SIGTERM) leaves the previous run as it was and
    no staging folder behind; until the new run is published the previous one stays readable in place.

    Stages whose inputs are unchanged since an earlier run into the same folder are taken from its cache
    (``.cache``: trainings, exports, engines, INT8 builds; ``context.fresh`` reuses nothing); after a
    successful run the cache keeps only what this run used."""
    started = time.perf_counter()
    dist = context_from_env(context.device)
    if not dist.is_main:
        context = dataclasses.replace(context, stage=lambda text: None)
    task = TASKS.get(recipe.task)(recipe.settings, context)
    task.check_inputs()
    check_targets(recipe)
    runtime = _training_runtime(recipe, context, dist)
    torch.manual_seed(context.seed)  # every rank draws the same global batches
    if not dist.is_main:
        with process_group(dist), training_runtime(runtime):
            task.train()
        return None
    out_dir = ensure_writable_dir(context.out_dir)
    with terminate_as_interrupt(), staging_dir(out_dir, STAGING_PREFIX) as staging, \
            errors_named_at(staging, out_dir), temp_files_in(staging / ".scratch"):
        cache = StageCache(out_dir / CACHE_DIR, staging, enabled=not context.fresh)
        report, bundle, selection, trainings = _run_stages(recipe, context, task, staging, out_dir.resolve(),
                                                           started, runtime, cache)
        relocate_sidecars(staging, staging.resolve(), out_dir.resolve())
        publish_entries(staging, out_dir, RUN_ENTRIES, last=REPORT_FILES)
        try:
            cache.prune(trainings)
        except OSError as exc:  # the run is published; a cache that could not be trimmed is only larger
            log.warning("could not prune %s: %s", out_dir / CACHE_DIR, exc)
    return RunResult(context.out_dir, report, bundle, selection)


def check_targets(recipe: Recipe) -> None:
    """Before any training: every target the run builds for on this machine (entries whose ``when:`` it does
    not meet are skipped) has its runtime installed and takes the recipe's options at its precision, and a
    named ``deploy.select`` is among them (one line otherwise)."""
    built = plan_targets(recipe.deploy).built
    named = recipe.deploy.select.named
    if named is not None and not any(named.matches(c.target, c.precision, c.quantizer if c.precision == "int8"
                                                   else None) for c in built):
        raise SelectionError(f"deploy.select names {named.label}, which is not built on this machine "
                             f"(its entry's 'when:' condition is not met)")
    plan = [*built, recipe.deploy.reference_target]
    for choice in plan:
        target = load_target(choice.target)
        target.check_precision(choice.precision)
        target.read_options(recipe.deploy.target_options(choice), choice.precision)


def _training_runtime(recipe: Recipe, context: RunContext, dist: DistContext) -> TrainingRuntime:
    """How this run trains: the device and precision asked for (checked against the hardware), the process
    group torchrun set up, and where checkpoints go (``.cache/train`` in the run folder)."""
    device = resolve_device(context.device, dist.local_rank)
    return TrainingRuntime(device=device, precision=resolve_precision(context.train_precision, device), dist=dist,
                           state_dir=Path(context.out_dir) / TRAIN_STATE_DIR, run_key=training_key(recipe, context),
                           role_keys={"teacher": training_key(recipe, context, without=STUDENT_SECTIONS)},
                           resume=context.resume, reuse=not context.fresh, checkpoint_every=context.checkpoint_every)


def _train(task, runtime: TrainingRuntime, say: Callable[[str], None]) -> tuple[dict[str, RoleModel], set[str]]:
    """The task's training under ``runtime`` (every rank together), saying what was reused or resumed; with
    the names of the checkpoint files in ``runtime.state_dir`` it read or wrote."""
    with process_group(runtime.dist), training_runtime(runtime):
        roles = task.train()
    reused = [role for role, rm in roles.items() if rm.training.get("reused")]
    if reused:
        say(f"reused finished training of {', '.join(reused)} (same recipe, data, seed and starting weights; "
            f"--fresh retrains)")
    for role, rm in roles.items():
        if rm.training.get("resumed_at") is not None:
            say(f"{role}: resumed at iteration {rm.training['resumed_at']} of {rm.training['iterations']}")
    if runtime.resume:
        fresh = [role for role, rm in roles.items() if rm.training and not rm.training.get("reused")
                 and rm.training.get("resumed_at") is None]
        if fresh:
            say(f"--resume: no checkpoint of a killed run for {', '.join(fresh)}; trained from the start")
    return roles, set(runtime.checkpoints_used)


def _run_stages(recipe: Recipe, context: RunContext, task, staging: Path, final: Path, started: float,
                runtime: TrainingRuntime, cache: StageCache) -> tuple[RunReport, Path | None, SelectionRecord,
                                                                      set[str]]:
    """Every stage into ``staging``; the report's paths name where the files will be once published to
    ``final``. The bundle holds the engine ``deploy.select`` chose (and its ``selection.json``). Exports and
    builds come from ``cache`` when their inputs are unchanged. Also returns the training checkpoints used."""
    stage = StageLog(context.stage)
    stage("train teacher, student (with KD) and baseline (without KD)")
    roles, trainings = _train(task, runtime, context.stage)
    _save_checkpoints(roles, staging / "checkpoints")
    complexity = {role: task.complexity(rm.model) for role, rm in roles.items()}
    stage("export to ONNX (dynamic axes verified at batch 1, 2, 3)")
    reused: dict[str, Reuse] = {}  # by artifact path (in staging)
    onnx = {}
    for role, rm in roles.items():
        onnx[role] = _export(task, rm, staging / "onnx" / f"{role}.onnx", recipe.name, cache, reused)
        if str(onnx[role].path) in reused:
            context.stage(f"reused export {onnx[role].path.name} (same weights and specs)")
    stage("build engines")
    targets = plan_targets(recipe.deploy)
    for line in targets.skipped:
        context.stage(f"skip {line}")
    plan = [("student", c) for c in targets.built]
    plan += [(role, recipe.deploy.reference_target) for role in ("teacher", "baseline")]
    engines = staging / "engines"
    int8 = Int8Stage(task, recipe.deploy, onnx_dir=staging / "onnx", engine_dir=engines,
                     seed=context.seed, announce=stage, source=recipe.name, cache=cache, run_key=runtime.run_key)
    gates: dict[str, Int8Record] = {}
    artifacts = []
    for role, choice in plan:
        if choice.precision == "int8":
            built = int8.build(role, onnx[role], roles[role], choice)
            artifact = built.artifact
            gates[str(artifact.path)] = built.record
            if built.reused is not None:
                reused[str(artifact.path)] = built.reused
                context.stage(f"reused engine {artifact.path.stem} (same ONNX, options, calibration data; its "
                              f"accuracy gate was measured by the run of {built.reused.built_by_run})")
        else:
            artifact = _build(onnx[role], choice, engines, role, recipe.deploy, cache, reused)
            if str(artifact.path) in reused:
                context.stage(f"reused engine {artifact.path.stem} (same ONNX, options and runtime version)")
        artifacts.append((role, artifact))
    measured = []
    for role, artifact in artifacts:
        gate = gates.get(str(artifact.path))
        how = f" ({gate.quantizer})" if gate else ""  # two INT8 engines on one target differ by quantizer
        stage(f"compare, evaluate and profile {role} on {artifact.target} {artifact.precision}{how}")
        measured.append(measure_engine(role, artifact, roles[role], task, recipe, int8=gate))
        if str(artifact.path) in reused:  # built by an earlier run; measured here
            measured[-1] = dataclasses.replace(measured[-1], reused=reused[str(artifact.path)].to_dict())
        for warning in measured[-1].warnings:  # said here and kept in the report
            context.stage(f"warning: {role} {measured[-1].label}: {warning}")
    report = build_run_report(recipe, context, task, roles, complexity, measured, time.perf_counter() - started)
    report = dataclasses.replace(report, reused_exports={onnx[role].path.name: reused[str(onnx[role].path)].to_dict()
                                                         for role in roles if str(onnx[role].path) in reused})
    selection = select_for_run(report.engines, recipe.deploy, report.headline_metric, targets.skipped)
    context.stage(f"selected {selection.label}: {selection.reason}")
    bundle = None
    if recipe.deploy.bundle:
        stage(f"bundle the student on {selection.label}")
        primary = next(a for role, a in artifacts if role == "student" and a.path.name == selection.chosen.engine)
        profile = next(e.profile for e in report.engines if e.path == str(primary.path))
        from compressor.targets.bundle import create_bundle
        from compressor.targets.signing import resolve_signing_key

        extras = {**task.bundle_extras(), SELECTION_FILE: (json.dumps(selection.to_dict(), indent=2) + "\n").encode()}
        made = create_bundle(primary, staging / "bundle", name=f"{recipe.name}-student", profile=profile,
                             extras=extras, signing_key=resolve_signing_key())
        context.stage(f"bundle identity {made.digest}" + (f", signed by {made.signed_by}" if made.signed_by
                                                           else " (unsigned: set EDGE_COMPRESS_SIGNING_KEY to sign)"))
        bundle = made.archive
    stage.close()
    moved = _published_path(staging.resolve(), final)
    report = dataclasses.replace(report, engines=tuple(dataclasses.replace(e, path=str(moved(e.path)))
                                                       for e in report.engines),
                                 bundle=str(moved(bundle)) if bundle else None)
    report = dataclasses.replace(report, selection=selection)
    write_report(report, staging)
    return report, moved(bundle) if bundle else None, selection, trainings


def _published_path(staging: Path, final: Path) -> Callable[[str | Path], Path]:
    """Where a path under ``staging`` will be once the run is published into ``final``."""
    def moved(path: str | Path) -> Path:
        path = Path(path).resolve()
        return final / path.relative_to(staging) if path.is_relative_to(staging) else path

    return moved


def relocate_sidecars(folder: Path, staging: Path, final: Path) -> None:
    """Rewrite the paths into ``staging`` that sidecars under ``folder`` record (the ONNX an engine was built
    from, the ranges an INT8 engine used) to where they will be once published into ``final``."""
    prefix = str(staging)

    def fixed(value):
        if isinstance(value, str) and (value == prefix or value.startswith(prefix + os.sep)):
            return str(final) + value[len(prefix):]
        if isinstance(value, dict):
            return {k: fixed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fixed(v) for v in value]
        return value

    for sidecar in folder.rglob(f"*{SIDECAR_SUFFIX}"):
        if ".scratch" in sidecar.relative_to(folder).parts:
            continue
        data = json.loads(sidecar.read_text())
        if (moved := fixed(data)) != data:
            write_json(sidecar, moved)


def _save_checkpoints(roles: dict[str, RoleModel], folder: Path) -> None:
    """Each role's state dict; serialised in memory first, so a full disk is an OSError naming the file."""
    ensure_writable_dir(folder)
    for role, rm in roles.items():
        buffer = io.BytesIO()
        torch.save(rm.model.state_dict(), buffer)
        with atomic_path(folder / f"{role}.pt") as tmp:
            tmp.write_bytes(buffer.getbuffer())


def _export(task, rm: RoleModel, path: Path, recipe_name: str, cache: StageCache,
            reused: dict[str, Reuse]) -> Artifact:
    """``rm`` exported to ``path``, or the same export taken from ``cache`` (same weights, structure and code,
    input specs, output names, export options and torch/onnx versions; ``reused`` then names it)."""
    ensure_writable_dir(path.parent)
    inputs, options = task.input_specs(), ExportOptions(source=f"{recipe_name}:{path.stem}")
    key = cache.key("export", {"name": path.name, "model": model_identity(rm.model),
                               "inputs": [s.to_dict() for s in inputs], "outputs": list(rm.output_names),
                               "options": plain(options),
                               "versions": package_versions(("torch", "onnx", "onnxslim", "onnxruntime"))})
    hit = cache.fetch("export", key)
    if hit is not None:
        reused[str(hit.artifacts["main"].path)] = hit.reuse
        return hit.artifacts["main"]
    artifact = export_onnx(rm.model, inputs, rm.output_names, path, options)
    cache.store("export", key, {"main": artifact})
    return artifact


def _build(onnx: Artifact, choice: TargetChoice, folder: Path, role: str, deploy, cache: StageCache,
           reused: dict[str, Reuse]) -> Artifact:
    """``onnx`` built for ``choice``, or the same engine taken from ``cache`` (same ONNX content, target,
    precision, options and runtime version; ``reused`` then names it)."""
    from compressor.targets.table import target_info

    ensure_writable_dir(folder)
    name, options = f"{role}_{choice.target}_{choice.precision}", deploy.target_options(choice)
    key = cache.key("engine", {"name": name, "onnx": files_digest(onnx), "target": choice.target,
                               "precision": choice.precision, "options": plain(options),
                               "versions": package_versions(target_info(choice.target).packages)})
    hit = cache.fetch("engine", key)
    if hit is not None:
        reused[str(hit.artifacts["main"].path)] = hit.reuse
        return hit.artifacts["main"]
    artifact = load_target(choice.target).build(onnx.path, precision=choice.precision, out_dir=folder, name=name,
                                                options=options)
    cache.store("engine", key, {"main": artifact})
    return artifact

