"""Options and small helpers shared by several commands (defined once), with their bounds."""
from __future__ import annotations

import json
import math
from typing import Any

import click

from compressor.runtime.measurement import (
    MAX_BATCH,
    MAX_DURATION_S,
    MAX_ITERATIONS,
    MAX_WARMUP_S,
    max_threads,
)


class Seconds(click.FloatRange):
    """Seconds from 0 to a maximum: a finite number (NaN and infinity refused; a range check alone lets NaN pass)."""

    name = "seconds"

    def __init__(self, maximum: float) -> None:
        super().__init__(min=0.0, max=maximum)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not (math.isfinite(number) and 0.0 <= number <= self.max):
            self.fail(f"{value} is not a finite number of seconds from 0 to {self.max:g}", param, ctx)
        return number


class FileStem(click.ParamType):
    """A name for files inside the output folder: no path separators, not ``.`` or ``..``, not hidden."""

    name = "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value)
        if (not text or text in (".", "..") or text.startswith(".") or "/" in text or "\\" in text
                or "\0" in text or len(text) > 200):
            self.fail(f"{text!r} is not a plain file name (no folders, '.' or '..'; it names files inside --out)",
                      param, ctx)
        return text


FILE_STEM = FileStem()


class WholeNumber(click.IntRange):
    """A whole number within [min, max] (its parse error says "integer", not "integer range")."""

    name = "integer"


DURATION = Seconds(MAX_DURATION_S)
"""A minimum timed duration: 0 to MAX_DURATION_S seconds."""
WARMUP = Seconds(MAX_WARMUP_S)
"""A warm-up duration: 0 to MAX_WARMUP_S seconds."""
ITERATIONS = WholeNumber(min=1, max=MAX_ITERATIONS)
"""A minimum iteration count: 1 to MAX_ITERATIONS."""
BATCH = WholeNumber(min=1, max=MAX_BATCH)
"""A batch size to profile: 1 to MAX_BATCH."""

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
threads_option = click.option("--threads", type=WholeNumber(min=1, max=max_threads()), default=None,
                              help="Intra-op threads for the runtime (default: the runtime's choice; "
                                   "at most 4 per CPU).")


def artifact_argument(name: str = "artifact"):
    """ARTIFACT: the artifact's file or its sidecar JSON."""
    return click.argument(name, type=click.Path(dir_okay=False, path_type=str))


def emit(data: Any, as_json: bool, text: str) -> None:
    """Print ``data`` as JSON, or ``text`` for people."""
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)
