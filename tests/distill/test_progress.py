"""Stage lines with timestamps and durations, and progress lines with ETA when output is not a terminal."""
from __future__ import annotations

import io
import re

import pytest

from compressor.distill.progress import (
    LineProgress,
    StageLog,
    format_duration,
    progress_bar,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stage_lines_carry_time_and_duration():
    lines, clock = [], FakeClock()
    stage = StageLog(lines.append, clock=clock)
    stage("train")
    clock.now += 75.0
    stage("export")
    clock.now += 2.5
    stage.close()
    stage.close()  # closing twice says nothing more
    stamp = r"\d\d:\d\d:\d\d"
    assert [re.sub(stamp, "T", line) for line in lines] == [
        "[1] T train", "[1] T done in 1 min 15 s", "[2] T export", "[2] T done in 2.5 s"]
    assert stage.durations == [("train", 75.0), ("export", 2.5)]


def test_stage_log_as_context_ends_the_last_stage():
    lines, clock = [], FakeClock()
    with StageLog(lines.append, clock=clock) as stage:
        stage("bundle")
        clock.now += 3600 + 125
    assert lines[-1].endswith("done in 1 h 02 min")


@pytest.mark.parametrize("seconds, text", [(0.04, "0.0 s"), (12.34, "12.3 s"), (65, "1 min 05 s"),
                                           (7325, "2 h 02 min"), (float("nan"), "?"), (-1, "?")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_line_progress_every_tenth_with_eta():
    lines, clock = [], FakeClock()
    with LineProgress(100, "student", emit=lines.append, every_s=1e9, clock=clock, quiet_s=0) as bar:
        for step in range(100):
            clock.now += 0.5  # 2 it/s
            if step == 19:  # as the trainer does: the postfix first, then the update
                bar.set_postfix(loss="0.1234")
            bar.update(1)
    assert len(lines) == 10  # at 10 %, 20 %, ..., 90 %, then the last line
    assert lines[0] == "student: 10/100 (10%) 5.0 s elapsed, 2 it/s, ETA 45.0 s"
    assert lines[1] == "student: 20/100 (20%) 10.0 s elapsed, 2 it/s, ETA 40.0 s, loss=0.1234"
    assert lines[-1] == "student: 100/100 done in 50.0 s, loss=0.1234"


def test_line_progress_every_interval_on_a_long_loop():
    lines, clock = [], FakeClock()
    bar = LineProgress(10_000, "teacher", emit=lines.append, every_s=30.0, every_fraction=1.0, clock=clock)
    for _ in range(1000):
        clock.now += 0.1  # 100 s in all: a line at 30, 60 and 90 s
        bar.update(1)
    assert len(lines) == 3 and lines[0].startswith("teacher: 300/10000 (3%) 30.0 s elapsed")
    assert "ETA 16 min 10 s" in lines[0]


def test_progress_bar_off_a_terminal_writes_lines():
    stream = io.StringIO()
    with progress_bar(4, "baseline", stream=stream, every_s=0.0, quiet_s=0.0) as bar:
        assert isinstance(bar, LineProgress)
        for _ in range(4):
            bar.update(1)
    written = stream.getvalue().splitlines()
    assert written[0].startswith("baseline: 1/4 (25%)") and written[-1].startswith("baseline: 4/4 done in")


def test_progress_bar_on_a_terminal_is_tqdm(tmp_path):
    import os
    import pty

    main, child = pty.openpty()
    try:
        with os.fdopen(child, "w") as stream:
            bar = progress_bar(3, "x", stream=stream)
            assert type(bar).__module__.startswith("tqdm")
            bar.close()
    finally:
        os.close(main)


def test_a_loop_shorter_than_the_quiet_time_writes_nothing():
    lines, clock = [], FakeClock()
    with LineProgress(20, "teacher", emit=lines.append, clock=clock, quiet_s=30) as bar:
        for _ in range(20):
            clock.now += 1.0  # 20 s in all
            bar.update(1)
    assert lines == []
