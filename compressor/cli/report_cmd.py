"""``compress report RUN_DIR``: re-render a run's report.md / report.html from its report.json; with
``--device-profile``, merge latency measured on a device; with ``--compare OTHER_RUN``, show two runs side by side."""
from __future__ import annotations

import click

from compressor.cli.options import emit, json_option


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--device-profile", "profiles", multiple=True, type=click.Path(dir_okay=False),
              help="A profile.json written by a bundle's profile step (repeat for several devices).")
@click.option("--device", "device_name", default=None, help="Label for the device (default: from the profile).")
@click.option("--compare", "other_dir", default=None, type=click.Path(file_okay=False),
              help="Another run's folder: print both side by side and write RUN_DIR/compare.html.")
@json_option
def report(run_dir, profiles, device_name, other_dir, as_json) -> None:
    """Show RUN_DIR's report and re-render report.md/report.html from report.json; with --device-profile, add
    device-measured latency to report.json too; with --compare, compare with another run."""
    from pathlib import Path

    from compressor.distill.report.read import (
        merge_device_profile,
        read_report,
        report_from_dict,
    )
    from compressor.distill.report.render import write_html, write_report

    folder = Path(run_dir)
    data = read_report(folder)
    # every value checked first: a report.json broken by hand or by an old version is one line naming the field
    typed = report_from_dict(data, str(folder / "report.json"))
    other = None
    if other_dir is not None:
        other = report_from_dict(read_report(Path(other_dir)), str(Path(other_dir) / "report.json"))
    if profiles:
        for path in profiles:  # each profile checked before anything is written
            typed = merge_device_profile(typed, Path(path), device_name)
        write_report(typed, folder)
        data = typed.to_dict()
    else:
        write_html(typed, folder)
    if other is not None:
        _compare(typed, other, folder, Path(other_dir), as_json)
        return
    rows = typed.device_profiles
    emit(data, as_json, f"{folder / 'report.md'}: {len(typed.engines)} engine(s) measured here, "
         f"{len(rows)} device profile(s); {folder / 'report.html'}" + "".join(
             f"\n  {r.device}: {r.target} {r.precision} median {r.latency.median:.3f} ms" for r in rows))


def _compare(run, other, folder, other_folder, as_json: bool) -> None:
    """Print the comparison and write ``compare.html`` into the run's folder."""
    from compressor.core.files import atomic_path
    from compressor.distill.report.compare import (
        compare_reports,
        comparison_html,
        comparison_markdown,
    )

    comparison = compare_reports(run, other, str(folder), str(other_folder))
    path = folder / "compare.html"
    with atomic_path(path) as tmp:
        tmp.write_text(comparison_html(comparison, run, other), encoding="utf-8")
    emit(comparison, as_json, comparison_markdown(comparison) + f"\n{path}")
