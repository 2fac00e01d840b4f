"""What this CPU offers OpenVINO and NNCF: bf16 inference, VNNI int8 arithmetic."""
from __future__ import annotations

from compressor.core.machine import cpu_flags


def cpu_supports_bf16() -> bool:
    """True when OpenVINO reports bf16 among the CPU's optimisation capabilities."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def cpu_has_vnni() -> bool:
    """True when this x86 CPU has VNNI (``/proc/cpuinfo`` flags); False when it cannot be told."""
    return bool({"avx512_vnni", "avx_vnni"} & cpu_flags())
