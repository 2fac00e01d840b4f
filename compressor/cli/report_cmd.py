"""``compress report RUN_DIR --device-profile profile.json``: merge latency measured on a device into a run's report."""
from __future__ import annotations

import click

from compressor.cli.options import emit, json_option


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--device-profile", "profiles", multiple=True, type=click.Path(dir_okay=False),
              help="A profile.json written by a bundle's profile step (repeat for several devices).")
@click.option("--device", "device_name", default=None, help="Label for the device (default: from the profile).")
@json_option
def report(run_dir, profiles, device_name, as_json) -> None:
    """Show RUN_DIR's report; with --device-profile, add device-measured latency and rewrite report.json/.md."""
    from pathlib import Path

    from compressor.distill.report.read import (
        merge_device_profile,
        read_report,
        report_from_dict,
    )
    from compressor.distill.report.render import write_report

    folder = Path(run_dir)
    data = read_report(folder)
    # every value checked first: a report.json broken by hand or by an old version is one line naming the field
    typed = report_from_dict(data, str(folder / "report.json"))
    if profiles:
        for path in profiles:  # each profile checked before anything is written
            typed = merge_device_profile(typed, Path(path), device_name)
        write_report(typed, folder)
        data = typed.to_dict()
    rows = typed.device_profiles
    emit(data, as_json, f"{folder / 'report.md'}: {len(typed.engines)} engine(s) measured here, "
         f"{len(rows)} device profile(s)" + "".join(
             f"\n  {r.device}: {r.target} {r.precision} median {r.latency.median:.3f} ms" for r in rows))
