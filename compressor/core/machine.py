"""The machine's state while timing: load average, other runnable threads and CPU frequency (Linux, stdlib only).

Each reading is cheap (a few small files under /proc and /sys) and optional: what cannot be read on this
system is left out of the snapshot, never guessed. ``compressor.runtime.measurement.measure_call(..., probe=snapshot)`` takes one
snapshot before warm-up and one after timing and judges them (``compressor.runtime.measurement.machine_warnings``).
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path

PROC = Path("/proc")
CPUFREQ = Path("/sys/devices/system/cpu")


def snapshot() -> dict:
    """``{"time", "load1", "load5", "load15", "running", "others_running", "cpu_mhz", "cpu_mhz_min",
    "cpu_mhz_max"}``: whichever of them this system lets us read."""
    state: dict = {"time": time.time()}
    state.update(load_average())
    own = own_running_threads()
    if "running" in state and own is not None:
        state["others_running"] = max(state["running"] - own, 0)
    freqs = cpu_frequencies_mhz()
    if freqs:
        state.update(cpu_mhz=sum(freqs) / len(freqs), cpu_mhz_min=min(freqs), cpu_mhz_max=max(freqs))
    return state


def load_average(path: Path = PROC / "loadavg") -> dict:
    """1/5/15-minute load averages and the runnable scheduling entities now (``/proc/loadavg``), or {}."""
    try:
        fields = path.read_text().split()
        running = int(fields[3].split("/")[0])
        return {"load1": float(fields[0]), "load5": float(fields[1]), "load15": float(fields[2]),
                "running": running}
    except (OSError, IndexError, ValueError):
        try:
            one, five, fifteen = os.getloadavg()
            return {"load1": one, "load5": five, "load15": fifteen}
        except (AttributeError, OSError):
            return {}


def own_running_threads(task_dir: Path = PROC / "self" / "task") -> int | None:
    """How many of this process's threads are runnable now (state R), or None where /proc is absent."""
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return None
    count = 0
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        state = stat.rpartition(")")[2].split()[:1]  # the name in parentheses may hold spaces
        count += state == ["R"]
    return count


def cpu_frequencies_mhz(root: Path = CPUFREQ) -> list[float]:
    """Current frequency (MHz) of each CPU this process may use, where cpufreq exposes it; else []."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = range(os.cpu_count() or 1)
    freqs = []
    for cpu in cpus:
        try:
            khz = int((root / f"cpu{cpu}" / "cpufreq" / "scaling_cur_freq").read_text().strip())
        except (OSError, ValueError):
            continue
        if khz > 0:
            freqs.append(khz / 1000.0)
    return freqs


@functools.cache
def cpu_flags(path: Path = PROC / "cpuinfo") -> frozenset[str]:
    """The words of ``/proc/cpuinfo`` (its ``flags`` among them: ``avx512_vnni``, ``amx_bf16``...); empty when it
    cannot be read. What the CPU reports decides precisions, never its name."""
    try:
        return frozenset(path.read_text(errors="replace").split())
    except OSError:
        return frozenset()
