"""``compress run RECIPE``: the whole distil-then-deploy pipeline in one command."""
from __future__ import annotations

import click

from compressor.cli.options import emit, json_option, threads_option


@click.command()
@click.argument("recipe", default="sr-dsclora")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (default: runs/<recipe name>).")
@click.option("--quick", is_flag=True, help="Apply the recipe's quick: overrides (a few minutes on a CPU).")
@click.option("--seed", type=int, default=None, help="Seed (default: the recipe's).")
@click.option("--data", type=click.Path(), default=None, help="Training data (a folder, or a file the task reads).")
@click.option("--teacher-weights", type=click.Path(), default=None, help="Load the teacher instead of training it.")
@click.option("--student-weights", type=click.Path(), default=None,
              help="Load the student's base instead of training it.")
@threads_option
@json_option
def run(recipe, out_dir, quick, seed, data, teacher_weights, student_weights, threads, as_json) -> None:
    """Run RECIPE (default sr-dsclora; a built-in name from 'compress list recipes' or a .yaml path).

    Stages: teacher (train or load) -> student base (train or load) -> distil, and a baseline with the
    same steps and data but no KD -> merge -> export -> build targets -> compare -> evaluate the metric
    through each engine -> profile -> report.json / report.md -> bundle.
    """
    import dataclasses
    from pathlib import Path

    from compressor.core.files import ensure_writable_dir
    from compressor.distill.config import ConfigError
    from compressor.distill.pipeline import run_recipe
    from compressor.distill.recipe import load_recipe
    from compressor.distill.tasks.base import RunContext

    loaded = load_recipe(recipe, quick=quick)
    if data is not None and not Path(data).exists():
        raise ConfigError(f"data not found: {data}")
    if threads:
        import torch

        torch.set_num_threads(threads)
        loaded = dataclasses.replace(loaded, deploy=dataclasses.replace(loaded.deploy, profile_threads=threads))
    folder = ensure_writable_dir(out_dir or Path("runs") / loaded.name)
    weights = {k: v for k, v in (("teacher", teacher_weights), ("student", student_weights)) if v}
    context = RunContext(out_dir=folder, seed=loaded.seed if seed is None else seed, quick=quick,
                         data=Path(data) if data else None, weights=weights,
                         stage=lambda text: click.echo(text, err=as_json))
    result = run_recipe(loaded, context)
    summary = result.report.summary.to_dict()
    emit(result.report.to_dict(), as_json,
         f"report: {folder / 'report.md'}\n" + "\n".join(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}"
                                                    for k, v in summary.items())
         + (f"\nbundle: {result.bundle}\nnext:   compress bundle verify {result.bundle}" if result.bundle else ""))
