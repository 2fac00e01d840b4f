"""Checking that report.html draws: every chart's SVG found in the page, each rendered alone and the whole page
screenshotted by headless Chromium with the network shut (a proxy on a closed port, every host name
unresolvable), and the pictures checked for ink. Used by ``benchmarks/report_screenshot.py`` and a test."""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from compressor.core.errors import CompressError

NO_NETWORK = ("--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND")
URL = re.compile(r"(?i)\b(?:https?|ftp|wss?)://")


class ScreenshotError(CompressError):
    """Chromium is missing or could not draw the page."""


@dataclass(frozen=True)
class Chart:
    """One ``<svg data-chart>`` of a page: its id, the marks it declares, the marks it holds, its markup."""

    chart_id: str
    declared: int
    marks: int
    svg: str


class _Charts(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html, self.charts, self._open = html, [], None
        self._lines = [0]
        for line in html.splitlines(keepends=True):
            self._lines.append(self._lines[-1] + len(line))

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._lines[line - 1] + column

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg" and "data-chart" in attrs:
            self._open = [attrs["data-chart"], int(attrs.get("data-marks", 0)), 0, self._offset()]
        elif self._open is not None and "mark" in (attrs.get("class") or "").split():
            self._open[2] += 1

    def handle_endtag(self, tag):
        if tag == "svg" and self._open is not None:
            chart_id, declared, marks, start = self._open
            end = self.html.index("</svg>", self._offset()) + len("</svg>")
            self.charts.append(Chart(chart_id, declared, marks, self.html[start:end]))
            self._open = None


def charts_in(html: str) -> list[Chart]:
    """Every chart of ``html`` with its marks counted."""
    parser = _Charts(html)
    parser.feed(html)
    parser.close()
    return parser.charts


def external_references(html: str) -> list[str]:
    """What in ``html`` could make a browser fetch something: URLs with a scheme, ``src``/``href`` other than
    in-page anchors, ``url(...)`` in CSS, ``@import``, scripts, links and frames."""
    found = [m.group(0) for m in URL.finditer(html)]
    found += re.findall(r"(?i)\b(?:src|srcset|href|action)\s*=\s*(?:\"(?!#)|'(?!#)|(?![\"'#]))[^\s\"'>]*", html)
    found += re.findall(r"(?i)url\(|@import|<script|<link|<iframe|<object|<embed|<img", html)
    return found


def chromium() -> str | None:
    """The Chromium binary, when installed."""
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)


def screenshot(html_path: Path, png_path: Path, *, width: int = 1280, height: int = 4000, timeout: float = 60) -> Path:
    """``html_path`` drawn by headless Chromium into ``png_path`` with every network request made impossible."""
    binary = chromium()
    if binary is None:
        raise ScreenshotError("chromium is not installed (Debian: apt-get install chromium)")
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               *NO_NETWORK, f"--screenshot={png_path}", f"--window-size={width},{height}",
               Path(html_path).resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not Path(png_path).is_file():
        raise ScreenshotError(f"chromium could not draw {html_path} (exit {done.returncode}): "
                              f"{done.stderr.strip().splitlines()[-1:] or ''}")
    return Path(png_path)


def ink(png_path: Path, box: tuple[int, int, int, int] | None = None) -> float:
    """The share of pixels (in ``box`` when given) that are not near-white."""
    from PIL import Image

    with Image.open(png_path) as image:
        grey = image.convert("L")
        if box is not None:
            grey = grey.crop(box)
        histogram = grey.histogram()
    return sum(histogram[:235]) / max(sum(histogram), 1)


_MARK = re.compile(r'<(\w+) class="mark"[^>]*?(?:/>|>.*?</\1>)', re.S)


def without_marks(svg: str) -> str:
    """``svg`` with its data marks removed: axes, grid and labels only."""
    return _MARK.sub("", svg)


def changed(png_a: Path, png_b: Path) -> int:
    """How many pixels differ between two pictures of the same size."""
    from PIL import Image, ImageChops

    with Image.open(png_a) as a, Image.open(png_b) as b:
        diff = ImageChops.difference(a.convert("L"), b.convert("L"))
        histogram = diff.histogram()
    return sum(histogram) - histogram[0]


MIN_PIXELS_PER_MARK = 30  # the smallest mark, a point of radius 5, covers about 80


def chart_page(chart: Chart) -> str:
    """A page holding only ``chart``, at its own size."""
    return ("<!DOCTYPE html><html><head><meta charset=utf-8><style>body{margin:0;background:#fff}</style></head>"
            f"<body>{chart.svg}</body></html>")


def check_report_draws(html_path: Path, out: Path) -> dict[str, float]:
    """Screenshot ``html_path`` and each of its charts alone, with and without its data marks, into ``out``;
    returns how many pixels each chart's data drew (``page``: the whole page's non-white share). Raises
    when a chart holds no marks or fewer than it declares, its data draws nothing, or the page refers to
    anything outside itself."""
    html = Path(html_path).read_text(encoding="utf-8")
    outside = external_references(html)
    if outside:
        raise ScreenshotError(f"{html_path} refers to things outside itself: {outside[:5]}")
    charts = charts_in(html)
    if not charts:
        raise ScreenshotError(f"{html_path} has no chart")
    out.mkdir(parents=True, exist_ok=True)
    found = {"page": ink(screenshot(html_path, out / "page.png"))}
    for chart in charts:
        if chart.marks == 0 or chart.marks < chart.declared:
            raise ScreenshotError(f"chart {chart.chart_id} holds {chart.marks} marks (declares {chart.declared})")
        size = re.search(r'width="(\d+)" height="(\d+)"', chart.svg)
        width, height = (int(size.group(1)), int(size.group(2))) if size else (1000, 600)
        pictures = []
        for name, svg in ((chart.chart_id, chart.svg), (f"{chart.chart_id}-frame", without_marks(chart.svg))):
            page = out / f"chart-{name}.html"
            page.write_text(chart_page(dataclasses.replace(chart, svg=svg)), encoding="utf-8")
            pictures.append(screenshot(page, out / f"chart-{name}.png", width=width, height=height))
        found[chart.chart_id] = changed(*pictures)  # what the data marks alone drew
        if found[chart.chart_id] < MIN_PIXELS_PER_MARK * chart.marks:
            raise ScreenshotError(f"chart {chart.chart_id}: its {chart.marks} data marks drew only "
                                  f"{found[chart.chart_id]} pixels")
    return found
