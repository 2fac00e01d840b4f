"""What this CPU offers OpenVINO and NNCF: bf16 inference, VNNI int8 arithmetic."""
from __future__ import annotations

import functools
from pathlib import Path


def cpu_supports_bf16() -> bool:
    """True when OpenVINO reports bf16 among the CPU's optimisation capabilities."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@functools.cache
def cpu_has_vnni() -> bool:
    """True when this x86 CPU has VNNI (Linux ``/proc/cpuinfo`` flags); False when it cannot be told."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags
