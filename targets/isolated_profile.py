"""Profiling an artifact in a fresh Python process, with the memory its runtime takes to load it and run it.

One engine's allocations, thread pools and caches do not disturb the next one's timing when each is measured
in its own interpreter, and the peak resident memory of that interpreter is the engine's (load + inference),
not the toolchain's. The parent sends a JSON request on the child's standard input and reads one JSON object
back from its standard output (the child sends everything else the runtimes print to standard error).

    >>> profile_isolated(Artifact.load("m.xml"), ProfileOptions(threads=1))["memory"]["peak_rss_mb"]
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from compressor.core.errors import CompressError
from compressor.runtime.measurement import MAX_DURATION_S
from compressor.targets.base import Artifact
from compressor.targets.profile import ProfileOptions, Shapes, artifact_size

MODULE = "compressor.targets.isolated_profile"
LOAD_ALLOWANCE_S = 600.0
"""Seconds a child may take beyond the protocol's own budget (interpreter start, imports, engine load)."""


class IsolatedProfileError(CompressError):
    """The fresh process could not profile the artifact (its one-line reason), or died or hung."""


def profile_isolated(artifact: Artifact, options: ProfileOptions = ProfileOptions(), *,
                     shapes: Shapes | None = None, timeout_s: float | None = None) -> dict:
    """Profile ``artifact`` in a fresh Python process (same interpreter and environment) and return the result.

    The result is :func:`compressor.targets.profile.profile_runner`'s, plus ``memory`` (``rss_start_mb``: the
    fresh process before loading; ``peak_rss_mb``: its peak for load + inference; ``peak_rss_above_start_mb``;
    ``load_s``; ``gpu_used_mb`` where an NVIDIA GPU and torch are present), ``size`` (:func:`artifact_size`)
    and ``isolated: true``. A problem in the child is raised here as one line (IsolatedProfileError).
    """
    request = {"artifact": str(artifact.sidecar), "options": dataclasses.asdict(options),
               "shapes": {name: [int(d) for d in shape] for name, shape in (shapes or {}).items()}}
    budget = timeout_s or options.warmup_s + MAX_DURATION_S + LOAD_ALLOWANCE_S
    try:
        done = subprocess.run([sys.executable, "-m", MODULE], input=json.dumps(request), capture_output=True,
                              text=True, timeout=budget, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired:
        raise IsolatedProfileError(f"isolated profile of {artifact.path.name} did not finish in {budget:g} s") from None
    answer = _last_json(done.stdout)
    if done.returncode != 0 or answer is None or "error" in answer:
        reason = (answer or {}).get("error") or _last_line(done.stderr) or f"exit status {done.returncode}"
        raise IsolatedProfileError(f"isolated profile of {artifact.path.name}: {reason}")
    return answer


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def rss_mb(field: str = "VmRSS") -> float | None:
    """This process's resident memory (``VmRSS``) or its peak (``VmHWM``) in MiB from /proc/self/status."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (VmHWM, else ``getrusage``'s ``ru_maxrss``)."""
    peak = rss_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0


def _nvidia_gpu_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()


def _gpu_used_mb() -> float | None:
    """Memory in use on the current CUDA device (MiB, all processes), where torch sees a GPU; else None."""
    if not _nvidia_gpu_present():
        return None
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info()
        return (total - free) / 2**20
    except Exception:  # noqa: BLE001 - a broken CUDA setup only means no GPU reading
        return None


def _measure(request: dict) -> dict:
    """The child's work: load the artifact, profile it, and read the memory it took."""
    from compressor.targets.profile import profile_runner
    from compressor.targets.table import open_runner

    options = ProfileOptions(**request["options"])
    artifact = Artifact.load(request["artifact"])
    gpu_before = _gpu_used_mb()
    start_rss = rss_mb() or 0.0
    started = time.perf_counter()
    with open_runner(artifact, threads=options.threads) as runner:
        load_s = time.perf_counter() - started
        loaded_rss = rss_mb()
        result = profile_runner(runner, options, shapes=request.get("shapes") or None)
        peak = peak_rss_mb()
        gpu_after = _gpu_used_mb() if gpu_before is not None else None
    memory = {"rss_start_mb": start_rss, "rss_after_load_mb": loaded_rss, "peak_rss_mb": peak,
              "peak_rss_above_start_mb": peak - start_rss, "load_s": load_s,
              "method": "VmHWM (peak resident set) of a fresh Python process that loaded and ran only this engine"}
    if gpu_before is not None and gpu_after is not None:
        memory["gpu_used_mb"] = gpu_after - gpu_before
        memory["gpu_method"] = "device memory in use after inference minus before load (torch.cuda.mem_get_info)"
    return {"artifact": str(artifact.path), "target": artifact.target, "precision": artifact.precision, **result,
            "memory": memory, "size": artifact_size(artifact), "isolated": True}


def main() -> int:
    """Child entry: read the request from stdin, write one JSON line to the real stdout; errors as ``error``."""
    answer_fd = os.dup(1)
    os.dup2(2, 1)  # what runtimes print (C and Python) goes to stderr; stdout carries the answer only
    sys.stdout = sys.stderr
    status = 0
    try:
        answer = _measure(json.loads(sys.stdin.read()))
    except CompressError as exc:
        answer, status = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}, 2
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        answer, status = {"error": f"{type(exc).__name__}: {lines[0]}"}, 3
    with os.fdopen(answer_fd, "w") as out:
        out.write(json.dumps(answer, default=str) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
