"""FP32 vs FP16 vs INT8 for the SR student on this CPU, in ONNX Runtime and OpenVINO.

Uses the published SPAN-Tiny (../shared/reference/span/spantiny26.pth; the DSCLoRA student's exact graph)
or, with --weights, a student checkpoint from a run. Latency is profiled at 1x3x128x128 in one process
(machine noise here is up to ~25% run to run, so compare within one run); OpenVINO compiles for the input
shape when the recipe says ``static_shapes`` (sr-dsclora does); PSNR-Y is measured through
each engine on the held-out photographs. INT8 is calibrated on training-split patches; the accuracy
gate (0.1 dB) keeps the most sensitive layers in float when needed. With ``--qat N`` the rows whose exporter
the QAT scheme mirrors (``openvino``: NNCF; ``qdq``: the Q/DQ rows) quantize the fine-tuned model with the
ranges it trained for (``+qat``); the other rows quantize the FP32 export. Run:

    python benchmarks/precision_matrix.py [--seconds 5] [--threads 1]
        [--weights runs/sr-dsclora/checkpoints/student.pt]
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import torch

SPAN = Path(__file__).resolve().parents[2] / "shared" / "reference" / "span" / "spantiny26.pth"
# (runtime, precision, quantizer, precision of the layers left out of INT8)
ROWS = [("onnxruntime", "fp32", "qdq", "fp32"), ("onnxruntime", "fp16", "qdq", "fp32"),
        ("onnxruntime", "int8", "qdq", "fp32"), ("openvino", "fp32", "qdq", "fp32"),
        ("openvino", "fp16", "qdq", "fp32"), ("openvino", "bf16", "qdq", "fp32"), ("openvino", "int8", "qdq", "fp32"),
        ("openvino", "int8", "nncf", "fp32"), ("openvino", "int8", "nncf", "bf16")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--weights", default=None, help="student state dict (.pt) instead of published SPAN-Tiny")
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=None,
                        help="inference threads per engine (default: all cores; 1 = one stream per core)")
    parser.add_argument("--qat", type=int, default=0, help="quantization-aware fine-tuning iterations before INT8")
    parser.add_argument("--qat-lr", type=float, default=1e-4)
    parser.add_argument("--qat-anchor", type=float, default=1.0, help="weight keeping the float model at FP32")
    parser.add_argument("--qat-scheme", choices=["qdq", "openvino"], default="qdq",
                        help="the exporter QAT mirrors: ONNX Runtime's Q/DQ or NNCF's placement for OpenVINO")
    parser.add_argument("--samples", type=int, default=32, help="calibration (and QAT) samples")
    parser.add_argument("--method", choices=["minmax", "entropy", "percentile"], default=None,
                        help="activation calibration (default: the sr-dsclora recipe's)")
    parser.add_argument("--int8", default="qdq,nncf", help="INT8 quantizers to run (comma-separated: qdq, nncf)")
    args = parser.parse_args()

    from compressor.core.tensor_spec import TensorSpec
    from compressor.distill.int8.schemes import scheme_for
    from compressor.distill.int8.stage import Int8Source, Int8Stage
    from compressor.distill.recipe import DeployConfig, TargetChoice, load_recipe
    from compressor.distill.tasks import TASKS, RoleModel
    from compressor.distill.tasks.base import RunContext
    from compressor.models import create_model
    from compressor.targets.onnx import export_onnx
    from compressor.targets.openvino import cpu_supports_bf16
    from compressor.targets.profile import ProfileOptions, profile_runner
    from compressor.targets.table import load_target, open_runner

    model = create_model("span_tiny", weights=str(SPAN) if SPAN.exists() and not args.weights else None)
    if args.weights:
        model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    recipe = load_recipe("sr-dsclora")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        task = TASKS.get("super-resolution")(recipe.settings, RunContext(out_dir=folder, seed=0, quick=True))
        onnx = export_onnx(model.eval(), task.input_specs(), ["sr"], folder / "student.onnx")
        deploy = DeployConfig(int8_budget=args.budget, qat_iterations=args.qat, qat_lr=args.qat_lr,
                              qat_float_anchor=args.qat_anchor, qat_scheme=args.qat_scheme,
                              static_shapes=recipe.deploy.static_shapes,
                              calibration_samples=args.samples,
                              calibration_method=args.method or recipe.deploy.calibration_method)
        print(f"INT8: {deploy.calibration_method} calibration on {deploy.calibration_samples} training patches, "
              f"gate budget {deploy.int8_budget} dB"
              + (f", {args.qat} QAT iterations ({args.qat_scheme})" if args.qat else ""))
        student = RoleModel(model, ["sr"], "bench")

        def int8_stage(config: DeployConfig) -> Int8Stage:
            return Int8Stage(task, config, onnx_dir=folder, engine_dir=folder, seed=0, source="bench")

        qat = int8_stage(deploy).finetune("student", onnx, student) if args.qat else None
        if qat is not None:
            record = qat.record
            print(f"QAT: {record.iterations} it, lr {record.details['lr']:g}, {record.details['samples']} samples, "
                  f"{record.seconds:.0f} s; relative L1 to FP32 under INT8 "
                  f"{record.relative_l1_before:.4f} -> {record.relative_l1_after:.4f}")
        feed_spec = TensorSpec.parse("image:1x3x128x128:float32:0..1")
        from compressor.core.feeds import random_feed

        feed = random_feed([feed_spec])
        print(f"SR student ({'published SPAN-Tiny' if not args.weights else args.weights}), input 1x3x128x128, "
              f"{args.seconds:g} s per engine, {args.threads or torch.get_num_threads()} threads")
        print(f"{'runtime':<12} {'precision':<10} {'quantizer':<14} | {'median ms':>9} | {'p99 ms':>8} | "
              f"{'vs fp32':>7} | {'PSNR-Y dB':>9} | {'dPSNR':>7} | kept in float")
        print("-" * 100)
        base: dict[str, tuple[float, float]] = {}
        for runtime, precision, quantizer, float_layers in ROWS:
            if "bf16" in (precision, float_layers) and not cpu_supports_bf16():
                continue
            if precision == "int8" and quantizer not in args.int8.split(","):
                continue
            kept, tuned = "-", False
            if precision == "int8":
                choice = TargetChoice(runtime, "int8", quantizer)
                tuned = qat is not None and qat.scheme is scheme_for(choice)  # else QAT trained for another
                source = Int8Source(qat.artifact, after_qat=True, ranges_from=onnx.path) if tuned else Int8Source(onnx)
                gate = int8_stage(dataclasses.replace(deploy, int8_float_layers=float_layers)).gate(
                    f"{runtime}_{quantizer}_{float_layers}", source, student, choice)
                artifact = gate.artifact
                kept = (", ".join(gate.record.kept_in_float) or "-") + (f" (in {float_layers})"
                                                                        if float_layers != "fp32" else "")
            else:
                artifact = load_target(runtime).build(onnx.path, precision=precision, out_dir=folder,
                                                      name=f"{runtime}_{precision}",
                                                      options=deploy.target_options(TargetChoice(runtime, precision)))
            with open_runner(artifact, threads=args.threads) as runner:
                psnr = task.evaluate(runner)["psnr_y"]
                lat = profile_runner(runner, ProfileOptions(min_duration_s=args.seconds, min_iterations=20),
                                     feed=feed)["latency_ms"]
            base.setdefault(runtime, (lat["median"], psnr))
            ref_ms, ref_psnr = base[runtime]
            label = (quantizer + ("+bf16" if float_layers != "fp32" else "") + ("+qat" if tuned else "")
                     if precision == "int8" else "")
            print(f"{runtime:<12} {precision:<10} {label:<14} | "
                  f"{lat['median']:>9.2f} | {lat['p99']:>8.2f} | {ref_ms / lat['median']:>6.2f}x | {psnr:>9.4f} | "
                  f"{psnr - ref_psnr:>+7.4f} | {kept}")


if __name__ == "__main__":
    main()
