"""Write scikit-learn's digits (8x8, shipped with it: no download) as 32x32 grey PNGs in the ImageFolder
layout: OUT/train/<digit>/*.png and OUT/val/<digit>/*.png.

    python make_data.py [--out data] [--train-per-class 30] [--val-per-class 10]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write_digits(out: Path, train_per_class: int = 30, val_per_class: int = 10, seed: int = 0) -> dict[str, int]:
    """Write the PNGs; returns the number of images per split."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "val": 0}
    for label in range(10):
        index = rng.permutation(np.flatnonzero(digits.target == label))
        chosen = {"train": index[:train_per_class], "val": index[train_per_class:train_per_class + val_per_class]}
        for split, rows in chosen.items():
            folder = out / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for row in rows:
                pixels = (digits.images[row] * (255.0 / 16.0)).astype(np.uint8)
                Image.fromarray(pixels, mode="L").resize((32, 32), Image.Resampling.BILINEAR).save(
                    folder / f"{row:04d}.png")
                counts[split] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    parser.add_argument("--train-per-class", type=int, default=30)
    parser.add_argument("--val-per-class", type=int, default=10)
    args = parser.parse_args()
    counts = write_digits(args.out, args.train_per_class, args.val_per_class)
    print(f"wrote {counts['train']} training and {counts['val']} validation images under {args.out}")


if __name__ == "__main__":
    main()
