"""Does report.html draw? Renders a run's HTML report, screenshots it in headless Chromium with the network shut
(proxy on a closed port, every host name unresolvable; the page's Content-Security-Policy forbids loading
anything too), renders each chart alone with and without its data marks, and checks that every chart's data
drew pixels and that the page refers to nothing outside itself.

Either takes run folders (their report.json is copied into the output folder and rendered there; the run
is not modified) or, with ``--digits``, runs the digits example's quick recipe first (~30 s). Needs
Chromium (Debian: ``apt-get install chromium``) and Pillow. Run:

    python benchmarks/report_screenshot.py RUN_DIR [RUN_DIR ...] [--out shots/]
    python benchmarks/report_screenshot.py --digits [--out shots/]

Prints, per run, the pixels each chart's data drew; the screenshots (page.png, chart-*.png) are left in
``--out`` to look at. Exit 1 when a check fails."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def digits_run(work: Path) -> Path:
    """The digits example's quick run, made in ``work``."""
    data = work / "digits-data"
    shutil.copytree(REPO / "examples" / "digits", data)
    subprocess.run([sys.executable, "make_data.py"], cwd=data, check=True)
    run = work / "r-digits"
    compress = Path(sys.executable).with_name("compress")
    subprocess.run([str(compress), "run", "recipe.yaml", "--quick", "--out", str(run)], cwd=data, check=True)
    return run


def check(run: Path, out: Path) -> dict[str, float]:
    """Render ``run``'s report (from a copy of its report.json) into ``out`` and check it draws."""
    from compressor.distill.report.read import read_report, report_from_dict
    from compressor.distill.report.render import write_report
    from compressor.distill.report.screenshot import check_report_draws

    out.mkdir(parents=True, exist_ok=True)
    report = report_from_dict(read_report(run), str(run / "report.json"))
    write_report(report, out)
    return check_report_draws(out / "report.html", out / "shots")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run folders holding report.json")
    parser.add_argument("--digits", action="store_true", help="run the digits example's quick recipe first")
    parser.add_argument("--out", type=Path, default=None, help="where the renders and screenshots go")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="report-screenshot-"))
    runs = list(args.runs)
    if args.digits:
        runs.append(digits_run(out))
    if not runs:
        parser.error("give a run folder or --digits")
    from compressor.core.errors import CompressError

    failed = False
    for run in runs:
        try:
            drawn = check(run, out / f"render-{run.name}")
        except CompressError as exc:
            print(f"{run}: FAILED: {exc}")
            failed = True
            continue
        charts = ", ".join(f"{k} {v}" for k, v in drawn.items() if k != "page")
        print(f"{run}: every chart drew its data (pixels: {charts}); page {drawn['page']:.1%} non-white; "
              f"screenshots in {out / f'render-{run.name}' / 'shots'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
