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
from compressor.runtime.measurement import MAX_WINDOWS, WINDOWS


@click.command()
@artifact_argument()
@click.option("--batch", type=BATCH, default=None,
              help="Samples per inference (default: axis 0 of --shape, else 1).")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=SIZExSIZE...",
              help="Concrete shape to time for an input with dynamic axes, e.g. image=1x3x256x256 (repeatable); "
                   "other dynamic axes take their example size.")
@threads_option
@click.option("--warmup", "warmup_s", type=WARMUP, default=0.5, show_default=True,
              help="Warm-up seconds.")
@click.option("--iterations", type=ITERATIONS, default=50, show_default=True,
              help="Minimum timed iterations.")
@click.option("--duration", "duration_s", type=DURATION, default=3.0, show_default=True,
              help="Minimum timed seconds (timing stops after 3600 s, whatever --iterations).")
@click.option("--windows", type=click.IntRange(1, MAX_WINDOWS), default=WINDOWS, show_default=True,
              help="Consecutive windows the timed samples are cut into (each one's median, and their spread).")
@click.option("--isolate", is_flag=True,
              help="Measure in a fresh Python process, with its peak resident memory for load + inference.")
@click.option("--save", type=click.Path(dir_okay=False), default=None, help="Also write the JSON result here.")
@click.option("--budget", "budget_text", default=None, metavar="KEY=N,...",
              help="Ceilings that gate CI, e.g. p99_ms=5,size_mb=4 (median_ms, p90_ms, p99_ms, size_mb); a broken "
                   "budget exits 1 and names it.")
@json_option
def profile(artifact, batch, shapes, threads, warmup_s, iterations, duration_s, windows, isolate, save,
            budget_text, as_json) -> None:
    """Profile ARTIFACT: warm-up by time, then at least --iterations AND --duration seconds, in windows."""
    import sys

    from compressor.core.files import write_json
    from compressor.distill.budgets import (
        PROFILE_KEYS,
        check_profile,
        parse_budget,
        require_keys,
    )
    from compressor.targets.base import Artifact
    from compressor.targets.profile import (
        ProfileOptions,
        artifact_size,
        parse_shapes,
        timed_specs,
    )

    # a malformed budget, or one a profile cannot answer, stops the command before measuring
    budget = require_keys(parse_budget(budget_text), PROFILE_KEYS, "a profile")
    loaded = Artifact.load(artifact)
    chosen = parse_shapes(shapes)
    _, batch = timed_specs(loaded.inputs, chosen, batch, owner=loaded.path.name)
    options = ProfileOptions(batch=batch, threads=threads, warmup_s=warmup_s, min_iterations=iterations,
                             min_duration_s=duration_s, windows=windows)
    if save:
        _check_save_path(Path(save), loaded)
    if isolate:
        from compressor.targets.isolated_profile import profile_isolated

        result = profile_isolated(loaded, options, shapes=chosen)
    else:
        from compressor.targets.profile import profile_runner
        from compressor.targets.table import open_runner

        with open_runner(loaded, threads=threads) as runner:
            result = profile_runner(runner, options, shapes=chosen)
        result = {"artifact": str(loaded.path), "target": loaded.target, "precision": loaded.precision, **result,
                  "size": artifact_size(loaded), "isolated": False}
    if save:
        write_json(save, result)
    emit(result, as_json, summary(result))
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    if budget:
        checked = check_profile(budget, result, size_bytes=result["size"]["bytes"])
        click.echo(checked.line(), err=as_json or not checked.passed)
        if not checked.passed:
            sys.exit(1)


def summary(result: dict) -> str:
    """The profile result for people: statistics, windows, shapes timed, size and memory."""
    lat, proto, win = result["latency_ms"], result["protocol"], result["windows"]
    shapes = ", ".join(f"{i['name']} {'x'.join(map(str, i['shape']))} {i['dtype']}" for i in proto["input_shapes"])
    lines = [
        f"{result['target']} {result['precision']} batch {proto['batch']}: median {lat['median']:.3f} ms  "
        f"mean {lat['mean']:.3f}  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  min {lat['min']:.3f}  "
        f"max {lat['max']:.3f}  std {lat['std']:.3f}",
        f"{result['throughput_fps']:.1f} samples/s over {result['iterations']} iterations, cov {result['cov']:.1%}; "
        f"{win['count']} window medians {', '.join(f'{m:.3f}' for m in win['median_ms'])} ms "
        f"(spread {win['spread']:.1%})",
        f"timed {shapes}; {proto['runtime']} {proto['runtime_version']}, threads {proto['threads'] or 'default'}, "
        f"{proto['host']['cpu_model'] or proto['host']['machine']} ({proto['host']['cpus']} logical CPUs)",
        f"size {result['size']['bytes'] / 2**20:.2f} MiB",
    ]
    memory = result.get("memory")
    if memory:
        lines[-1] += (f"; peak resident memory {memory['peak_rss_mb']:.1f} MiB "
                      f"({memory['peak_rss_above_start_mb']:.1f} MiB for load + inference, isolated process)")
        if "gpu_used_mb" in memory:
            lines[-1] += f"; GPU memory {memory['gpu_used_mb']:.1f} MiB"
    return "\n".join(lines)


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
