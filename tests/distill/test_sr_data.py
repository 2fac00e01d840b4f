"""SR data: folder data set on PNGs written here, crops equal the whole-image LR, the scikit-image split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from compressor.core.errors import CompressError
from compressor.distill.data import (
    SKIMAGE_TRAIN,
    SKIMAGE_VAL,
    DatasetError,
    ImageFolderSRDataset,
    SkimageSRDataset,
    SRPair,
    bicubic_downscale,
)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, (h, w) in {"0001": (70, 90), "0002": (64, 64), "0003": (81, 66)}.items():
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    Image.fromarray(rng.integers(0, 256, size=(50, 50), dtype=np.uint8)).save(tmp_path / "0004.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def locate(patch: torch.Tensor, image: torch.Tensor, step: int) -> tuple[int, int]:
    """(row, col) in units of ``step`` where ``patch`` sits inside ``image`` (noise images: unique)."""
    windows = image.unfold(1, patch.shape[1], step).unfold(2, patch.shape[2], step)
    diff = (windows - patch[:, None, None]).abs().amax(dim=(0, 3, 4))
    row, col = (diff == 0).nonzero()[0].tolist()
    return row, col


def test_full_images_are_mod_cropped_pairs(folder):
    data = ImageFolderSRDataset(folder, patch_size=None)
    assert len(data) == 4 and data.names == ["0001", "0002", "0003", "0004"]
    pair = data[0]
    assert isinstance(pair, SRPair) and pair.hr.shape == (3, 68, 88) and pair.lr.shape == (3, 17, 22)
    assert torch.equal(pair.lr, bicubic_downscale(pair.hr, 4))
    assert torch.allclose(pair.lr * 255, (pair.lr * 255).round(), atol=1e-4)  # 8-bit LR
    assert data[3].hr.shape == (3, 48, 48)  # gray JPEG read as RGB


def test_random_patch_lr_equals_crop_of_whole_image_lr(folder):
    data = ImageFolderSRDataset(folder, patch_size=32, augment=False, seed=3, repeat=4)
    full = ImageFolderSRDataset(folder, patch_size=None)
    for index in range(len(data)):
        pair, whole = data[index], full[index % 4]
        assert pair.hr.shape == (3, 32, 32) and pair.lr.shape == (3, 8, 8)
        row, col = locate(pair.hr, whole.hr, step=4)  # offsets are multiples of the scale
        assert torch.allclose(pair.lr, whole.lr[:, row: row + 8, col: col + 8], atol=1e-6)


def test_crops_and_flips_are_seeded(folder):
    a = ImageFolderSRDataset(folder, patch_size=16, seed=7)
    b = ImageFolderSRDataset(folder, patch_size=16, seed=7)
    c = ImageFolderSRDataset(folder, patch_size=16, seed=8)
    assert all(torch.equal(a[i].hr, b[i].hr) and torch.equal(a[i].lr, b[i].lr) for i in range(4))
    assert any(not torch.equal(a[i].hr, c[i].hr) for i in range(4))
    before = [a[i].hr for i in range(4)]
    a.set_epoch(1)
    assert any(not torch.equal(a[i].hr, before[i]) for i in range(4))


def test_flipped_pairs_stay_aligned(folder):
    data = ImageFolderSRDataset(folder, patch_size=32, augment=True, seed=1, repeat=8)
    for index in range(len(data)):
        lr, hr = data[index]
        # Away from the patch edge the LR only depends on pixels inside the patch.
        assert torch.allclose(lr[:, 2:-2, 2:-2], bicubic_downscale(hr, 4)[:, 2:-2, 2:-2], atol=1.01 / 255)


def test_loader_collates_pairs(folder):
    batch = next(iter(DataLoader(ImageFolderSRDataset(folder, patch_size=16), batch_size=2)))
    assert isinstance(batch, SRPair) and batch.lr.shape == (2, 3, 4, 4) and batch.hr.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("content", ["empty", "no_images", "missing"])
def test_folder_without_images_is_a_one_line_error(tmp_path, content):
    root = tmp_path / "missing" if content == "missing" else tmp_path
    if content == "no_images":
        (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(CompressError) as info:
        ImageFolderSRDataset(root)
    assert isinstance(info.value, DatasetError) and "\n" not in str(info.value)


def test_bad_patch_sizes(folder):
    with pytest.raises(DatasetError, match="multiple of scale"):
        ImageFolderSRDataset(folder, patch_size=30)
    with pytest.raises(DatasetError, match="larger than image"):
        ImageFolderSRDataset(folder, patch_size=96)[0]


def test_builtin_split_is_fixed_and_deterministic():
    assert not set(SKIMAGE_TRAIN) & set(SKIMAGE_VAL)
    train = SkimageSRDataset(split="train", patch_size=64, seed=0)
    again = SkimageSRDataset(split="train", patch_size=64, seed=0)
    assert train.names == SKIMAGE_TRAIN and len(train) == 9 and train.augment
    assert all(torch.equal(train[i].lr, again[i].lr) for i in range(len(train)))
    val = SkimageSRDataset(split="val", patch_size=None)
    assert val.names == SKIMAGE_VAL and not val.augment
    chelsea = val[0]
    assert chelsea.hr.shape == (3, 300, 448) and chelsea.lr.shape == (3, 75, 112)
    assert 0.0 <= float(chelsea.hr.min()) and float(chelsea.hr.max()) <= 1.0
    china = train[SKIMAGE_TRAIN.index("sklearn:china")]  # scikit-learn's sample photograph, 427x640
    assert china.hr.shape == (3, 64, 64) and china.lr.shape == (3, 16, 16) and float(china.hr.std()) > 0.01
    with pytest.raises(DatasetError, match="split"):
        SkimageSRDataset(split="test")
