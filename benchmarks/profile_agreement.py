"""Does `compress profile` agree with OpenVINO's own benchmark_app on the same IR?

Exports SPAN-Tiny (published weights when ../shared has them) at 1x3x128x128, builds an OpenVINO FP32 IR,
profiles it with `compress profile` and with `benchmark_app` (latency hint, f32 inputs and inference
precision) in the same run, and prints both medians and their ratio. Run:

    python benchmarks/profile_agreement.py [--seconds 10] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SPAN_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "span" / "spantiny26.pth"


def build_ir(folder: Path) -> Path:
    """Export SPAN-Tiny with a static 128x128 input and build the OpenVINO FP32 IR."""
    from compressor.core.tensor_spec import TensorSpec
    from compressor.models.spec import load_model_spec
    from compressor.targets.onnx import ExportOptions, export_onnx
    from compressor.targets.table import load_target

    kwargs = {"weights": str(SPAN_WEIGHTS)} if SPAN_WEIGHTS.exists() else {}
    loaded = load_model_spec("span_tiny", **kwargs)
    onnx = export_onnx(loaded.model, [TensorSpec.parse("image:1x3x128x128:float32:0..1")], ["sr"],
                       folder / "span_tiny.onnx", ExportOptions())
    return load_target("openvino").build(onnx.path, precision="fp32", out_dir=folder).path


def compress_profile(xml: Path, seconds: float) -> float:
    """Median latency (ms) from `compress profile --json`, run as a user would."""
    done = subprocess.run([sys.executable, "-m", "compressor.cli", "profile", str(xml), "--json", "--duration",
                           str(seconds), "--warmup", "1"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["latency_ms"]["median"]


def benchmark_app(xml: Path, seconds: float, report: Path) -> float:
    """Median latency (ms) from OpenVINO's benchmark_app in latency mode with f32 everywhere."""
    report.mkdir(parents=True, exist_ok=True)
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    subprocess.run([tool, "-m", str(xml), "-d", "CPU", "-hint", "latency", "-t", str(int(seconds)), "-ip", "f32",
                    "-infer_precision", "f32", "-json_stats", "-report_type", "no_counters",
                    "-report_folder", str(report)],
                   capture_output=True, text=True, check=True)
    stats = json.loads((report / "benchmark_report.json").read_text())
    return float(_find_median(stats))


def _find_median(stats: dict) -> str:
    for section in stats.get("execution_results", {}), *stats.values():
        if isinstance(section, dict) and "latency (ms)" in section:
            return section["latency (ms)"]
    raise KeyError("benchmark_app report has no 'latency (ms)'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the two tools this many times")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        xml = build_ir(folder)
        rows = []
        for round_ in range(args.rounds):
            ours = compress_profile(xml, args.seconds)
            theirs = benchmark_app(xml, args.seconds, folder / f"report{round_}")
            rows.append((round_ + 1, ours, theirs, ours / theirs))
    weights = "published spantiny26" if SPAN_WEIGHTS.exists() else "random init"
    print(f"SPAN-Tiny ({weights}), OpenVINO FP32 IR, 1x3x128x128, CPU, latency hint, {args.seconds:g} s each")
    print(f"{'round':>5} | {'compress profile median ms':>26} | {'benchmark_app median ms':>23} | {'ratio':>6}")
    print("-" * 72)
    for round_, ours, theirs, ratio in rows:
        print(f"{round_:>5} | {ours:>26.3f} | {theirs:>23.3f} | {ratio:>6.3f}")


if __name__ == "__main__":
    main()
