"""``compress run RECIPE``: the whole distil-then-deploy pipeline in one command."""
from __future__ import annotations

import click

from compressor.cli.launch import NPROC_MAX
from compressor.cli.options import emit, json_option, threads_option
from compressor.distill.budgets import BUDGET_HELP

TRAIN_PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # compressor.distill.train_runtime.PRECISIONS, without torch


@click.command()
@click.argument("recipe", required=False, default=None)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (default: runs/<recipe name>).")
@click.option("--quick", is_flag=True, help="Apply the recipe's quick: overrides (a few minutes on a CPU).")
@click.option("--seed", type=int, default=None, help="Seed (default: the recipe's).")
@click.option("--data", type=click.Path(), default=None, help="Training data (a folder, or a file the task reads).")
@click.option("--teacher-weights", type=click.Path(), default=None, help="Load the teacher instead of training it.")
@click.option("--student-weights", type=click.Path(), default=None,
              help="Load the student's base instead of training it.")
@click.option("--teacher", "teacher_spec", default=None,
              help="Your teacher (MODEL_SPEC): replaces the recipe's, or without RECIPE runs from the starter "
                   "recipe's defaults (with --student and --data).")
@click.option("--student", "student_spec", default=None, help="Your student (MODEL_SPEC), as --teacher.")
@click.option("--task", "task_kind", type=click.Choice(["classification", "embedding"]), default=None,
              help="With --teacher/--student: what the models output (default classification).")
@click.option("--init", "init_name", default=None,
              help="Write a commented starter recipe NAME.yaml for your own models, and stop.")
@click.option("--budget", "budget_text", default=None, metavar="KEY=N,...",
              help=BUDGET_HELP + " Checked on the engine deploy.select chose (the one bundled).")
@click.option("--nproc", type=click.IntRange(1, NPROC_MAX), default=1,
              help="Train in N processes on this machine (torchrun, DistributedDataParallel; gloo on CPU, NCCL "
                   "on GPUs). Several machines: start torchrun yourself (README).")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda|cuda:N|auto",
              help="Where training runs (engines are built and measured on this machine's CPU as before).")
@click.option("--train-precision", type=click.Choice(TRAIN_PRECISIONS), default="fp32", show_default=True,
              help="bf16/fp16: mixed-precision autocast (bf16 on CPUs with bf16 units or GPUs; fp16 on GPUs); "
                   "auto: bf16 where the hardware has it.")
@click.option("--resume", is_flag=True, help="Continue trainings a killed run left checkpoints of (.cache/train).")
@click.option("--fresh", is_flag=True, help="Reuse nothing from earlier runs in this folder: retrain, re-export, "
                                            "rebuild.")
@click.option("--checkpoint-every", type=click.IntRange(0, None), default=0, metavar="N",
              help="Training checkpoint every N iterations (default 0: about twenty per training).")
@threads_option
@json_option
@click.pass_context
def run(ctx, recipe, out_dir, quick, seed, data, teacher_weights, student_weights, teacher_spec, student_spec,
        task_kind, init_name, budget_text, nproc, device, train_precision, resume, fresh, checkpoint_every, threads,
        as_json) -> None:
    """Run RECIPE (default sr-dsclora; a built-in name from 'compress list recipes' or a .yaml path).

    Stages: teacher (train or load) -> student base (train or load) -> distil, and a baseline with the
    same steps and data but no KD -> merge -> export -> build targets -> compare -> evaluate the metric
    through each engine -> profile -> report.json / report.md -> bundle.

    Your own models: 'compress run --teacher teacher.py:build --student student.py:build --data DIR', or
    'compress run --init NAME' for a recipe to edit ('compress run NAME.yaml').
    """
    import dataclasses
    import os
    import sys
    from pathlib import Path

    from compressor.core.files import ensure_writable_dir
    from compressor.distill.budgets import check_run, parse_budget
    from compressor.distill.config import ConfigError
    from compressor.distill.pipeline import run_recipe
    from compressor.distill.recipe_bounds import SEED_MAX
    from compressor.distill.tasks.base import RunContext

    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"--seed: must be in 0..{SEED_MAX} (what numpy and torch accept), got {seed}")
    budget = parse_budget(budget_text)  # a malformed budget stops the command before any training
    own = {"teacher": teacher_spec, "student": student_spec, "data": data, "task": task_kind}
    if init_name is not None:
        path = _write_starter(init_name, own)
        emit({"recipe": str(path)}, as_json, f"wrote {path}\nnext:  edit it, then: compress run {path} --quick")
        return
    loaded = _recipe(recipe, own, quick)
    if data is not None and not Path(data).exists():
        raise ConfigError(f"data not found: {data}")
    if resume and fresh:
        raise ConfigError("--resume and --fresh contradict each other: --resume continues, --fresh starts over")
    if nproc > 1 and device.strip().lower().startswith("cuda:"):
        raise ConfigError(f"--device {device} names one GPU for all {nproc} processes: use --device cuda (each "
                          f"process takes its own GPU)")
    from compressor.distill.train_runtime import resolve_device, resolve_precision

    resolve_precision(train_precision, resolve_device(device))  # a device or precision this machine lacks: now
    if nproc > 1:
        from compressor.cli.launch import command_args, launch
        from compressor.distill.distributed import launched_by_torchrun

        if launched_by_torchrun():
            raise ConfigError("--nproc: this process was already started by torchrun; drop --nproc")
        sys.exit(launch(nproc, command_args(ctx)))
    if threads:
        import torch

        torch.set_num_threads(threads)
        loaded = dataclasses.replace(loaded, deploy=dataclasses.replace(loaded.deploy, profile_threads=threads))
    folder = Path(out_dir or Path("runs") / loaded.name)
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun's other ranks train but write nothing
        folder = ensure_writable_dir(folder)
    weights = {k: v for k, v in (("teacher", teacher_weights), ("student", student_weights)) if v}
    context = RunContext(out_dir=folder, seed=loaded.seed if seed is None else seed, quick=quick,
                         data=Path(data) if data else None, weights=weights,
                         stage=lambda text: click.echo(text, err=as_json), device=device,
                         train_precision=train_precision, resume=resume, fresh=fresh,
                         checkpoint_every=checkpoint_every)
    result = run_recipe(loaded, context)
    if result is None:  # a torchrun worker other than rank 0: it trained; rank 0 writes and reports the run
        return
    checked = check_run(budget, result.report, result.selection) if budget else None
    summary = result.report.summary.to_dict()
    data = result.report.to_dict() | ({"budget": checked.to_dict()} if checked else {})
    emit(data, as_json,
         f"report: {folder / 'report.md'}\n" + "\n".join(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}"
                                                    for k, v in summary.items())
         + (f"\nselected: {result.selection.label} ({result.selection.reason})" if result.selection else "")
         + (f"\nbundle: {result.bundle}\nnext:   compress bundle verify {result.bundle}" if result.bundle else ""))
    if checked is not None:
        click.echo(checked.line(), err=as_json or not checked.passed)
        if not checked.passed:
            sys.exit(1)


def _recipe(recipe: str | None, own: dict, quick: bool):
    """The recipe to run: RECIPE (its models replaced by --teacher/--student when given), or one built from
    the starter's defaults and --teacher/--student/--data."""
    from pathlib import Path

    from compressor.core.user_code import resolve_beside
    from compressor.distill.config import ConfigError
    from compressor.distill.recipe import load_recipe, parse_recipe
    from compressor.distill.recipes.starter import starter_mapping

    # a model file named on the command line is relative to where compress runs, not to the recipe's folder
    models = {role: resolve_beside(own[role], Path.cwd()) for role in ("teacher", "student") if own[role]}
    if recipe is not None or not models:
        if own["task"] is not None:
            raise ConfigError("--task goes with --teacher and --student without RECIPE (a recipe names its task)")
        return load_recipe(recipe or "sr-dsclora", quick=quick, models=models)
    if own["teacher"] is None or own["student"] is None or own["data"] is None:
        raise ConfigError("running your own models needs --teacher, --student and --data")
    mapping = starter_mapping("own-models", task=own["task"] or "classification", teacher=own["teacher"],
                              student=own["student"], data=str(own["data"]))
    return parse_recipe(mapping, "command line", quick=quick)


def _write_starter(name: str, own: dict):
    """Write ``NAME.yaml`` (the commented starter recipe, with any --teacher/--student/--data/--task filled in);
    an existing file is never overwritten."""
    from pathlib import Path

    from compressor.core.files import atomic_path
    from compressor.distill.config import ConfigError
    from compressor.distill.recipes.starter import starter_recipe

    path = Path(name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if path.exists():
        raise ConfigError(f"{path} already exists; not overwriting it (choose another name or remove it)")
    values = {k: str(v) for k, v in own.items() if v is not None}
    text = starter_recipe(path.stem, **values)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return path
