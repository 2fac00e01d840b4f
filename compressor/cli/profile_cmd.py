"""``compress profile``: latency statistics of an artifact, with the protocol written into the result."""
from __future__ import annotations

import click

from compressor.cli.options import artifact_argument, emit, json_option, threads_option


@click.command()
@artifact_argument()
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@threads_option
@click.option("--warmup", "warmup_s", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Warm-up seconds.")
@click.option("--iterations", type=click.IntRange(min=1), default=50, show_default=True,
              help="Minimum timed iterations.")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="Minimum timed seconds.")
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
