"""The machine snapshot reads what Linux exposes and leaves out what it cannot read."""
from __future__ import annotations

import os
from pathlib import Path

from compressor.core.machine import (
    cpu_frequencies_mhz,
    load_average,
    own_running_threads,
    snapshot,
)
from compressor.runtime.measurement import cpu_model, host_info


def test_load_average_parses_proc_loadavg(tmp_path):
    path = tmp_path / "loadavg"
    path.write_text("1.50 0.75 0.25 3/412 12345\n")
    assert load_average(path) == {"load1": 1.5, "load5": 0.75, "load15": 0.25, "running": 3}


def test_garbage_loadavg_falls_back_to_getloadavg(tmp_path):
    path = tmp_path / "loadavg"
    path.write_text("garbage\n")
    assert set(load_average(path)) == {"load1", "load5", "load15"}


def test_own_running_threads_counts_this_thread():
    assert own_running_threads() >= 1  # the thread reading is running
    assert own_running_threads(Path("/nonexistent")) is None


def test_cpu_frequencies_from_a_cpufreq_tree(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    for index, cpu in enumerate(cpus):
        folder = tmp_path / f"cpu{cpu}" / "cpufreq"
        folder.mkdir(parents=True)
        (folder / "scaling_cur_freq").write_text(f"{2_000_000 + 100_000 * index}\n")
    freqs = cpu_frequencies_mhz(tmp_path)
    assert freqs == [2000.0 + 100.0 * i for i in range(len(cpus))]
    assert cpu_frequencies_mhz(tmp_path / "absent") == []


def test_snapshot_holds_what_is_readable():
    state = snapshot()
    assert state["time"] > 0 and state["load1"] >= 0 and state["others_running"] >= 0
    assert all(isinstance(v, (int, float)) for v in state.values())


def test_host_info_names_the_cpu():
    host = host_info()
    assert host["cpu_model"] == cpu_model() and host["processor"]  # never empty on Linux
    assert host["usable_cpus"] <= host["cpus"]
