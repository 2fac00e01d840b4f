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
    if profiles:
        merged = report_from_dict(data, str(folder / "report.json"))
        for path in profiles:
            merged = merge_device_profile(merged, Path(path), device_name)
        write_report(merged, folder)
        data = merged.to_dict()
    rows = data.get("device_profiles", [])
    emit(data, as_json, f"{folder / 'report.md'}: {len(data.get('artifacts', []))} engine(s) measured here, "
         f"{len(rows)} device profile(s)" + "".join(
             f"\n  {r['device']}: {r['target']} {r['precision']} median {r['latency_ms']['median']:.3f} ms"
             for r in rows))
