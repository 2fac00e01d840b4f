"""``compress layers``: per-layer time of an artifact by PyTorch module, and the precision each layer ran in."""
from __future__ import annotations

import click

from compressor.cli.options import (
    BATCH,
    artifact_argument,
    emit,
    json_option,
    threads_option,
)


@click.command()
@artifact_argument()
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True, help="Modules to show.")
@click.option("--depth", type=click.IntRange(1, 64), default=None,
              help="Group modules by their first N names (default: the innermost module of each layer).")
@click.option("--runs", type=click.IntRange(1, 10_000), default=10, show_default=True, help="Profiled inferences.")
@click.option("--batch", type=BATCH, default=1, show_default=True)
@threads_option
@json_option
def layers(artifact, top, depth, runs, batch, threads, as_json) -> None:
    """Profile ARTIFACT layer by layer: the slowest PyTorch modules with their share of the time, and the
    precision each convolution or product executed in (warnings where it is not what the artifact asked)."""
    from compressor.distill.report.layers import layer_section, render_layer_section
    from compressor.targets.base import Artifact
    from compressor.targets.layers.profile import LayerOptions, profile_layers

    loaded = Artifact.load(artifact)
    profile = profile_layers(loaded, LayerOptions(runs=runs, batch=batch, threads=threads))
    report = layer_section([profile], top=top, depth=depth)
    data = {"profile": profile.to_dict(), **report.to_dict()}
    emit(data, as_json, "\n".join(render_layer_section(report)).rstrip())
    for note in profile.notes:
        click.echo(f"note: {note}", err=True)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
