"""DSCLoRA with the published checkpoints: SPAN-28 teacher, SPAN-Tiny base, fine-tuned on the built-in photos.

Prints PSNR-Y / SSIM-Y (shave 4, 8-bit outputs) on the held-out photographs for bicubic upsampling,
published SPAN-Tiny, published DSCLoRA (NTIRE 2025 winner), and ours (published SPAN-Tiny + ConvLoRA
distilled from published SPAN-28 with spatial-affinity KD on the training split). Needs
../shared/reference/span. Run:

    python benchmarks/sr_published.py [--iterations 400] [--seed 0] [--patch 256] [--batch 4]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

SPAN_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "span"


class BicubicRunner:
    """Bicubic x4 upsampling as a runner-like object (the floor every SR model must beat)."""

    input_specs = ()

    def __init__(self, spec, scale: int) -> None:
        self.input_specs, self.scale = (spec,), scale

    def infer(self, feed):
        image = torch.from_numpy(next(iter(feed.values())))
        up = torch.nn.functional.interpolate(image, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return {"sr": up.numpy()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patch", type=int, default=256, help="HR training patch (LR is patch / 4)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reconstruction", type=float, default=None, help="L1(S, HR) weight (default: recipe's)")
    parser.add_argument("--output", type=float, default=None, help="L1(S, T) weight (default: recipe's)")
    parser.add_argument("--affinity", type=float, default=None, help="affinity KD weight (default: recipe's)")
    args = parser.parse_args()
    if not SPAN_DIR.is_dir():
        sys.exit(f"published checkpoints not found at {SPAN_DIR}")
    from compressor.distill.recipe import load_recipe
    from compressor.distill.tasks import TASKS
    from compressor.distill.tasks.base import RunContext
    from compressor.models import create_model
    from compressor.targets.torch_runner import TorchRunner

    recipe = load_recipe("sr-dsclora")
    settings = recipe.settings
    distill = dataclasses.replace(settings.distill, train=dataclasses.replace(
        settings.distill.train, iterations=args.iterations, lr=args.lr, batch=args.batch, patch=args.patch),
        loss=dataclasses.replace(settings.distill.loss, **{k: v for k, v in (
            ("reconstruction", args.reconstruction), ("output", args.output), ("affinity", args.affinity))
            if v is not None}))
    settings = dataclasses.replace(settings, teacher=dataclasses.replace(settings.teacher, model="span_28"),
                                   distill=distill, data=dataclasses.replace(settings.data, val_max_size=100_000))
    context = RunContext(out_dir=Path("."), seed=args.seed, quick=False, stage=lambda text: print(text),
                         weights={"teacher": str(SPAN_DIR / "span28.pth"), "student": str(SPAN_DIR / "spantiny26.pth")})
    task = TASKS.get("super-resolution")(settings, context)
    teacher = task._train_or_load("teacher", settings.teacher)
    base = task._train_or_load("student", settings.student)
    start = time.perf_counter()
    ours = task._distil(base, teacher, kd=True)
    no_kd = task._distil(base, teacher, kd=False)
    seconds = time.perf_counter() - start
    spec = task.input_specs()[0]
    rows = [("bicubic", BicubicRunner(spec, 4))]
    rows += [(name, TorchRunner(model, [spec], ["sr"])) for name, model in [
        ("published SPAN-Tiny", base.model), ("published DSCLoRA", create_model(
            "span_tiny", weights=str(SPAN_DIR / "team23_DSCF.pth"))), ("published SPAN-28 (teacher)", teacher.model),
        ("ours: ConvLoRA, no KD", no_kd.model), ("ours: DSCLoRA (affinity + output KD)", ours.model)]]
    print(f"\nheld-out scikit-image photographs ({', '.join(task._dataset('builtin', train=False).names)}), x4, "
          f"whole images; fine-tuning {args.iterations} it at lr {args.lr:g}, batch {args.batch} x {args.patch}px HR "
          f"patches, on the {len(task._dataset('builtin', train=True).names)} training photos "
          f"({seconds:.0f} s for both); loss weights {dataclasses.asdict(distill.loss)}")
    print(f"{'model':<38} | {'PSNR-Y dB':>9} | {'SSIM-Y':>7} | {'PSNR-RGB':>8}")
    print("-" * 72)
    for name, runner in rows:
        if hasattr(runner, "__enter__"):
            with runner:
                scores = task.evaluate(runner)
        else:
            scores = task.evaluate(runner)
        print(f"{name:<38} | {scores['psnr_y']:>9.4f} | {scores['ssim_y']:>7.4f} | {scores['psnr_rgb']:>8.4f}")


if __name__ == "__main__":
    main()
