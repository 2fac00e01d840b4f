"""Super-resolution training pairs: HR images from a folder or scikit-image, LR by bicubic downscaling.

LR images are made on the fly with antialiased bicubic interpolation (``F.interpolate(mode="bicubic",
antialias=True)``, the PIL/MATLAB-like kernel) and rounded to 8 bits like stored LR PNGs. A random
HR patch is cropped at offsets that are multiples of ``scale`` and its LR is computed from the patch
plus a margin, which equals cropping the LR of the whole image. Crops and flips are drawn from a
``torch.Generator`` seeded by ``(seed, epoch, index)``: reproducible and the same in every worker.

>>> data = SkimageSRDataset(split="val", patch_size=None)
>>> pair = data[0]; pair.lr.shape[0], pair.hr.shape[-1] == 4 * pair.lr.shape[-1]
(3, True)
"""
from __future__ import annotations

import abc
import functools
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from compressor.core.errors import CompressError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Colour photographs bundled with scikit-image, plus scikit-learn's two sample photographs ("sklearn:"), no
# download; split once and for all.
SKIMAGE_TRAIN = ("astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
                 "motorcycle_left", "motorcycle_right", "sklearn:china", "sklearn:flower")
SKIMAGE_VAL = ("chelsea", "coffee")


class DatasetError(CompressError):
    """A dataset that cannot be built: no images, unreadable files, patches larger than images."""


class SRPair(NamedTuple):
    """One training or validation pair: ``lr`` is 3 x h x w and ``hr`` 3 x (s*h) x (s*w), in [0, 1]."""

    lr: Tensor
    hr: Tensor


def bicubic_downscale(hr: Tensor, scale: int, *, quantize: bool = True) -> Tensor:
    """Antialiased bicubic downscaling of a C x H x W (or N x C x H x W) image by ``scale``.

    H and W must be multiples of ``scale``. ``quantize`` rounds to the 8-bit grid, like an LR PNG.
    """
    batched = hr if hr.dim() == 4 else hr.unsqueeze(0)
    h, w = batched.shape[-2:]
    lr = F.interpolate(batched, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    if quantize:
        lr = (lr.clamp(0, 1) * 255).round() / 255
    return lr if hr.dim() == 4 else lr[0]


def to_chw_float(image: np.ndarray) -> Tensor:
    """An H x W (gray), H x W x 3 or H x W x 4 uint8 array as a 3 x H x W float tensor in [0, 1]."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3])
    if not image.flags.writeable:  # PIL hands out read-only buffers
        image = image.copy()
    return torch.from_numpy(image).permute(2, 0, 1).float().div_(255)


class _SRDataset(Dataset, abc.ABC):
    """Shared pair logic; subclasses provide ``_num_images``, ``_load_hr(i)`` and ``describe``."""

    def __init__(self, *, scale: int = 4, patch_size: int | None = 192, augment: bool = True,
                 seed: int = 0, repeat: int = 1) -> None:
        if patch_size is not None and patch_size % scale:
            raise DatasetError(f"HR patch size {patch_size} is not a multiple of scale {scale}")
        self.scale, self.patch_size, self.augment = scale, patch_size, augment
        self.seed, self.repeat, self.epoch = seed, repeat, 0

    @abc.abstractmethod
    def _num_images(self) -> int:
        """How many distinct HR images the data set has."""

    @abc.abstractmethod
    def _load_hr(self, index: int) -> Tensor:
        """HR image ``index`` as a 3 x H x W float tensor in [0, 1]."""

    def set_epoch(self, epoch: int) -> None:
        """Draw different crops and flips each epoch (still reproducible)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self._num_images() * self.repeat

    def __getitem__(self, index: int) -> SRPair:
        hr = self._load_hr(index % self._num_images())
        s = self.scale
        hr = hr[:, : hr.shape[1] // s * s, : hr.shape[2] // s * s]  # mod-crop
        if self.patch_size is None:
            return SRPair(bicubic_downscale(hr, s), hr)
        gen = torch.Generator().manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_033 + index) % 2**63)
        pair = self._random_patch(hr, gen, index)
        return _flip(pair, gen) if self.augment else pair

    def _random_patch(self, hr: Tensor, gen: torch.Generator, index: int) -> SRPair:
        s, p = self.scale, self.patch_size
        height, width = hr.shape[1:]
        if p > height or p > width:
            raise DatasetError(f"HR patch {p} is larger than image {index % self._num_images()} "
                               f"({height}x{width}) of {self.describe()}")
        top = int(torch.randint(0, (height - p) // s + 1, (1,), generator=gen)) * s
        left = int(torch.randint(0, (width - p) // s + 1, (1,), generator=gen)) * s
        margin = 2 * s  # the antialiased bicubic kernel reaches at most 2*scale HR pixels
        y0, x0 = max(0, top - margin), max(0, left - margin)
        y1, x1 = min(height, top + p + margin), min(width, left + p + margin)
        lr = bicubic_downscale(hr[:, y0:y1, x0:x1], s)
        ly, lx = (top - y0) // s, (left - x0) // s
        return SRPair(lr[:, ly: ly + p // s, lx: lx + p // s], hr[:, top: top + p, left: left + p])

    def describe(self) -> str:
        """A short human description for error messages."""
        return type(self).__name__

    def check_images(self, *, min_size: int, decode: bool) -> None:
        """Raise DatasetError naming the first image that cannot be read (fully decoded when ``decode``, else
        its header and checksums) or is smaller than ``min_size`` on a side. Built-in images are known good."""


def _flip(pair: SRPair, gen: torch.Generator) -> SRPair:
    """Random horizontal flip, vertical flip and transpose, applied identically to LR and HR."""
    hflip, vflip, transpose = (bool(b) for b in torch.randint(0, 2, (3,), generator=gen))
    lr, hr = pair
    if hflip:
        lr, hr = lr.flip(-1), hr.flip(-1)
    if vflip:
        lr, hr = lr.flip(-2), hr.flip(-2)
    if transpose:
        lr, hr = lr.transpose(-1, -2), hr.transpose(-1, -2)
    return SRPair(lr.contiguous(), hr.contiguous())


class ImageFolderSRDataset(_SRDataset):
    """HR images (PNG/JPG/BMP/TIFF/WebP) in ``root`` (DIV2K_train_HR style), sorted by name, non-recursive.

    >>> data = ImageFolderSRDataset("DIV2K_train_HR", patch_size=256, seed=0)  # doctest: +SKIP
    """

    def __init__(self, root: str | Path, *, scale: int = 4, patch_size: int | None = 192,
                 augment: bool = True, seed: int = 0, repeat: int = 1) -> None:
        super().__init__(scale=scale, patch_size=patch_size, augment=augment, seed=seed, repeat=repeat)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"image folder not found: {self.root}")
        self.paths = sorted(p for p in self.root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.paths:
            raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.root}")
        self.names = [p.stem for p in self.paths]

    def _num_images(self) -> int:
        return len(self.paths)

    def _load_hr(self, index: int) -> Tensor:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return to_chw_float(np.asarray(image.convert("RGB")))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DatasetError(f"cannot read image {path}: {_first_line(exc)}") from None

    def check_images(self, *, min_size: int, decode: bool) -> None:
        for path in self.paths:
            try:
                with Image.open(path) as image:
                    width, height = image.size
                    if decode or image.format != "PNG":
                        image.load()
                    else:
                        image.verify()  # a PNG's chunks and checksums, without decoding (large training sets)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise DatasetError(f"cannot read image {path}: {_first_line(exc)}") from None
            if min(width, height) < min_size:
                raise DatasetError(f"image {path} is {width}x{height}: smaller than {min_size} pixels, the "
                                   f"largest training patch (use larger images or a smaller patch)")

    def describe(self) -> str:
        return f"folder {self.root}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _skimage_loader(name: str) -> Callable[[], np.ndarray]:
    if name.startswith("sklearn:"):
        # scikit-learn ships two sample photographs, china.jpg and flower.jpg (427x640)
        from sklearn.datasets import load_sample_image

        return lambda: load_sample_image(name.removeprefix("sklearn:") + ".jpg")
    import skimage.data  # heavy import, only when the built-in data set is used

    if name.startswith("motorcycle_"):
        side = 0 if name.endswith("left") else 1
        return lambda: skimage.data.stereo_motorcycle()[side]
    return getattr(skimage.data, name)


@functools.lru_cache(maxsize=None)
def _skimage_image(name: str) -> Tensor:
    return to_chw_float(_skimage_loader(name)())


class SkimageSRDataset(_SRDataset):
    """Real colour photographs bundled with scikit-image (and scikit-learn's two): 9 for ``split="train"``,
    2 for ``"val"``.

    The split is a fixed list (:data:`SKIMAGE_TRAIN`, :data:`SKIMAGE_VAL`); nothing is downloaded.
    """

    def __init__(self, *, split: str = "train", scale: int = 4, patch_size: int | None = 192,
                 augment: bool | None = None, seed: int = 0, repeat: int = 1) -> None:
        splits = {"train": SKIMAGE_TRAIN, "val": SKIMAGE_VAL}
        if split not in splits:
            raise DatasetError(f"unknown split '{split}' of the scikit-image data set; choose train or val")
        augment = split == "train" if augment is None else augment
        super().__init__(scale=scale, patch_size=patch_size, augment=augment, seed=seed, repeat=repeat)
        self.split, self.names = split, splits[split]

    def _num_images(self) -> int:
        return len(self.names)

    def _load_hr(self, index: int) -> Tensor:
        return _skimage_image(self.names[index]).clone()  # callers may write into it

    def describe(self) -> str:
        return f"scikit-image {self.split} split"

