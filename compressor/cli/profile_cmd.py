"""``compress profile``: latency statistics of an artifact, with the protocol written into the result."""
from __future__ import annotations

from pathlib import Path

import click

from compressor.cli.options import (
    BATCH,
    DURATION,
    ITERATIONS,
    WARMUP,
    artifact_argument,
    emit,
    json_option,
    threads_option,
)


@click.command()
@artifact_argument()
@click.option("--batch", type=BATCH, default=1, show_default=True)
@threads_option
@click.option("--warmup", "warmup_s", type=WARMUP, default=0.5, show_default=True,
              help="Warm-up seconds.")
@click.option("--iterations", type=ITERATIONS, default=50, show_default=True,
              help="Minimum timed iterations.")
@click.option("--duration", "duration_s", type=DURATION, default=3.0, show_default=True,
              help="Minimum timed seconds (timing stops after 3600 s, whatever --iterations).")
@click.option("--save", type=click.Path(dir_okay=False), default=None, help="Also write the JSON result here.")
@json_option
def profile(artifact, batch, threads, warmup_s, iterations, duration_s, save, as_json) -> None:
    """Profile ARTIFACT: warm-up by time, then at least --iterations AND --duration seconds."""
    from compressor.core.files import write_json
    from compressor.targets.base import Artifact
    from compressor.targets.profile import ProfileOptions, profile_runner
    from compressor.targets.table import open_runner

    loaded = Artifact.load(artifact)
    options = ProfileOptions(batch=batch, threads=threads, warmup_s=warmup_s, min_iterations=iterations,
                             min_duration_s=duration_s)
    if save:
        _check_save_path(Path(save), loaded)
    with open_runner(loaded, threads=threads) as runner:
        result = profile_runner(runner, options)
    result = {"artifact": str(loaded.path), "target": loaded.target, "precision": loaded.precision, **result}
    if save:
        write_json(save, result)
    lat = result["latency_ms"]
    emit(result, as_json,
         f"{loaded.target} {loaded.precision} batch {batch}: median {lat['median']:.3f} ms  mean {lat['mean']:.3f}  "
         f"p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  min {lat['min']:.3f}  max {lat['max']:.3f}  "
         f"std {lat['std']:.3f}\n{result['throughput_fps']:.1f} samples/s over {result['iterations']} iterations, "
         f"cov {result['cov']:.1%}")
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)


def _check_save_path(save: Path, loaded) -> None:
    """Refuse, before measuring, a --save path whose folder is missing or that would overwrite the artifact."""
    from compressor.core.errors import CompressError

    folder = save.parent
    if not folder.is_dir():
        raise CompressError(f"--save {save}: folder {folder} does not exist")
    protected = {loaded.path.resolve(), loaded.sidecar.resolve()}
    protected |= {(loaded.folder / name).resolve() for name in loaded.files}
    if save.resolve() in protected:
        raise CompressError(f"--save {save} would overwrite the artifact being profiled; choose another file")
