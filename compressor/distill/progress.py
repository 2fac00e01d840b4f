"""Progress that shows in logs, not only on a terminal: timed stage lines and interval progress lines with ETA.

:class:`StageLog` numbers the pipeline's stages, stamps each with the wall-clock time and says how long it took
when the next one starts (or when it is closed). :func:`progress_bar` gives a tqdm bar on a terminal and, when
the output is a file or a pipe (CI logs, ``nohup``), a :class:`LineProgress` that writes one line every
``every_s`` seconds or every ``every_fraction`` of the work, with rate and ETA, and a last line when done.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable, TextIO

EVERY_S = 30.0
"""Seconds between two progress lines off a terminal (at most)."""
EVERY_FRACTION = 0.10
"""Share of the work between two progress lines off a terminal (at most)."""


def format_duration(seconds: float) -> str:
    """``0.4 s``, ``12.3 s``, ``2 min 05 s``, ``1 h 02 min``: short and exact enough for a log."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class StageLog:
    """Numbered, timestamped stage announcements; a stage's duration is said when the next begins or on close.

    >>> stage = StageLog(print)
    >>> stage("export")          # [1] 14:02:07 export
    >>> stage("build")           # [1] 14:02:19 done in 12.0 s   then   [2] 14:02:19 build
    >>> stage.close()            # [2] 14:03:01 done in 42.0 s
    """

    def __init__(self, emit: Callable[[str], None], *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.emit, self.clock, self.wall = emit, clock, wall
        self.count = 0
        self.durations: list[tuple[str, float]] = []
        self._current: tuple[str, float] | None = None

    def _stamp(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.wall()))

    def __call__(self, text: str) -> None:
        """End the current stage (if any) and announce the next one."""
        self.end()
        self.count += 1
        self._current = (text, self.clock())
        self.emit(f"[{self.count}] {self._stamp()} {text}")

    def end(self) -> float | None:
        """End the current stage: say its duration and return it (None when no stage is open)."""
        if self._current is None:
            return None
        text, started = self._current
        self._current = None
        seconds = max(self.clock() - started, 0.0)
        self.durations.append((text, seconds))
        self.emit(f"[{self.count}] {self._stamp()} done in {format_duration(seconds)}")
        return seconds

    close = end

    def __enter__(self) -> "StageLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()


class LineProgress:
    """A tqdm-like progress for output that is not a terminal (``update``, ``set_postfix``, ``close``).

    Writes ``desc: 120/1000 (12%) 0:41 elapsed, 2.9 it/s, ETA 5 min 03 s, loss=0.0312`` every ``every_s``
    seconds and every ``every_fraction`` of ``total``, and a final ``desc: 1000/1000 done in ...``; nothing in
    the first ``quiet_s`` seconds, so a short loop writes nothing (its stage line says how long it took).
    """

    def __init__(self, total: int, desc: str = "", *, emit: Callable[[str], None] = _stderr_line,
                 every_s: float = EVERY_S, every_fraction: float = EVERY_FRACTION, unit: str = "it",
                 clock: Callable[[], float] = time.monotonic, quiet_s: float = EVERY_S) -> None:
        self.total, self.desc, self.emit, self.unit = max(int(total), 0), desc, emit, unit
        self.every_s, self.every_fraction, self.clock, self.quiet_s = every_s, every_fraction, clock, quiet_s
        self.n = 0
        self.postfix = ""
        self.started = self._last_time = clock()
        self._last_bucket = 0
        self._closed = False

    def set_postfix(self, **values: object) -> None:
        """Values shown at the end of the next line (``loss=0.0312``)."""
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def update(self, n: int = 1) -> None:
        """``n`` more units done; writes a line when the interval or the share of the work has passed."""
        self.n += n
        now = self.clock()
        bucket = int(self.n / self.total / self.every_fraction) if self.total and self.every_fraction > 0 else 0
        if now - self.started < self.quiet_s:  # short loops stay quiet
            self._last_bucket = bucket
            return
        if self.n < self.total and (now - self._last_time >= self.every_s or bucket > self._last_bucket):
            self._last_time, self._last_bucket = now, bucket
            self.emit(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The progress line for the work done so far."""
        elapsed = (self.clock() if now is None else now) - self.started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        done = f"{self.n}/{self.total}" + (f" ({self.n / self.total:.0%})" if self.total else "")
        eta = format_duration((self.total - self.n) / rate) if rate > 0 and self.total else "?"
        text = (f"{self.desc}: {done} {format_duration(elapsed)} elapsed, {rate:.3g} {self.unit}/s, ETA {eta}")
        return text + (f", {self.postfix}" if self.postfix else "")

    def close(self) -> None:
        """Write the final line (once)."""
        if self._closed:
            return
        self._closed = True
        elapsed = self.clock() - self.started
        if elapsed < self.quiet_s:
            return
        text = f"{self.desc}: {self.n}/{self.total} done in {format_duration(elapsed)}"
        self.emit(text + (f", {self.postfix}" if self.postfix else ""))

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(total: int, desc: str = "", *, stream: TextIO | None = None, **line_options):
    """A tqdm bar when ``stream`` (default stderr) is a terminal, else a :class:`LineProgress` writing to it.

    Both take ``update(n)``, ``set_postfix(**values)`` and work as context managers, so a loop uses either.
    """
    stream = stream or sys.stderr
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if terminal:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=line_options.get("unit", "it"), leave=False, dynamic_ncols=True,
                    file=stream)
    return LineProgress(total, desc, emit=line_options.pop("emit", None) or _line_writer(stream), **line_options)


def _line_writer(stream: TextIO) -> Callable[[str], None]:
    def write(text: str) -> None:
        stream.write(text + "\n")
        stream.flush()
    return write
