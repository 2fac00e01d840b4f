"""The user's own data for the generic tasks, read into memory as arrays.

Sources:

- an **image folder** in the ImageFolder layout: ``DIR/train/CLASS/*.png|jpg`` and ``DIR/val/CLASS/...`` (given
  split), or ``DIR/CLASS/...`` (a seeded held-out fraction becomes the validation split); classes are the sorted
  sub-folder names; images are read with PIL, converted to the model's channels (1: grey, 3: RGB), resized to
  its input size and scaled to ``0..1`` (N x C x H x W float32);
- an **.npz** file: ``x`` (inputs, first axis the samples) and optional ``y`` (integer labels), optional
  ``x_val`` / ``y_val`` (the given validation split; without them a held-out fraction);
- **user code** ``file.py:function`` / ``package.module:function`` returning a torch ``Dataset`` or an iterable
  of ``(x, y)`` samples or of bare ``x`` samples (label-free), or a mapping ``{"train": ..., "val": ...}`` of
  those (or of ``(x, y)`` arrays).

Samples without labels are allowed (label-free distillation): ``ArraySet.labels`` is then None.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compressor.distill.config import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class UserDataError(ConfigError):
    """User data that is missing, empty or malformed."""


@dataclass(frozen=True)
class ArraySet:
    """Inputs (first axis the samples) and optional integer labels."""

    inputs: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def subset(self, index: np.ndarray) -> ArraySet:
        """The samples at ``index``."""
        return ArraySet(self.inputs[index], None if self.labels is None else self.labels[index])


@dataclass(frozen=True)
class ImageLayout:
    """How images become model inputs: ``channels`` (1 or 3) and ``size`` (height, width)."""

    channels: int = 3
    size: tuple[int, int] | None = None  # None: each image's own size (they must agree)


@dataclass(frozen=True)
class UserData:
    """The train and validation splits, the class names (image folders), and how the split was made."""

    train: ArraySet
    val: ArraySet
    classes: tuple[str, ...] = ()
    split: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def labelled(self) -> bool:
        return self.train.labels is not None

    def summary(self) -> dict[str, Any]:
        """Source, split, sample counts and (when labelled) per-class counts, for the report."""
        out: dict[str, Any] = {"source": self.source, "split": self.split,
                               "input_shape": list(self.train.inputs.shape[1:]),
                               "counts": {"train": len(self.train), "val": len(self.val)},
                               "labelled": self.labelled}
        if self.classes:
            out["classes"] = list(self.classes)
        if self.labelled:
            out["class_counts"] = {name: _class_counts(s.labels, self.classes) for name, s in
                                   (("train", self.train), ("val", self.val))}
        return out


def load_user_data(source: str, *, layout: ImageLayout, val_fraction: float, seed: int,
                   max_train: int | None = None, max_val: int | None = None) -> UserData:
    """Read ``source`` (image folder, ``.npz`` or ``module:function``) into a train and a validation split."""
    from compressor.core.user_code import is_user_spec

    if not source:
        raise UserDataError("data.source: give an image folder, an .npz file or module:function (or --data)")
    path = Path(source).expanduser()
    if path.is_dir():
        data = _image_folder(path, layout, val_fraction, seed)
    elif path.suffix == ".npz":
        data = _npz(path, val_fraction, seed)
    elif is_user_spec(source) and not path.exists():
        data = _user_function(source, val_fraction, seed)
    else:
        raise UserDataError(f"data not found or not readable: {source} (an image folder, an .npz file or "
                            f"module:function)")
    data = _limit(data, max_train, max_val)
    for name, split in (("train", data.train), ("val", data.val)):
        if len(split) == 0:
            raise UserDataError(f"data {source}: the {name} split is empty")
    if data.train.inputs.shape[1:] != data.val.inputs.shape[1:]:
        raise UserDataError(f"data {source}: train inputs are {data.train.inputs.shape[1:]} but validation inputs "
                            f"are {data.val.inputs.shape[1:]}")
    return data


# ---------------------------------------------------------------- image folders
def _image_folder(root: Path, layout: ImageLayout, val_fraction: float, seed: int) -> UserData:
    if (root / "train").is_dir():
        classes = _class_names(root / "train")
        val_root = root / "val" if (root / "val").is_dir() else None
        train = _read_classes(root / "train", classes, layout)
        if val_root is not None:
            return UserData(train, _read_classes(val_root, classes, layout), classes,
                            {"kind": "given", "train": str(root / "train"), "val": str(val_root)}, str(root))
        return _held_out(train, classes, val_fraction, seed, str(root))
    classes = _class_names(root)
    return _held_out(_read_classes(root, classes, layout), classes, val_fraction, seed, str(root))


def _class_names(folder: Path) -> tuple[str, ...]:
    classes = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise UserDataError(f"data {folder}: no class folders (expected {folder}/CLASS/*.png, the ImageFolder layout)")
    return classes


def _read_classes(folder: Path, classes: tuple[str, ...], layout: ImageLayout) -> ArraySet:
    images, labels = [], []
    for index, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue  # a validation folder may lack a class
        for file in sorted(class_dir.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                images.append(read_image(file, layout))
                labels.append(index)
    if not images:
        raise UserDataError(f"data {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise UserDataError(f"data {folder}: images have different sizes {sorted(shapes)[:2]}...; set data.image_size")
    return ArraySet(np.stack(images), np.asarray(labels, dtype=np.int64))


def read_image(path: Path, layout: ImageLayout) -> np.ndarray:
    """One image as C x H x W float32 in ``0..1``, converted to ``layout``'s channels and size."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("L" if layout.channels == 1 else "RGB")
            if layout.size is not None and image.size != (layout.size[1], layout.size[0]):
                image = image.resize((layout.size[1], layout.size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UserDataError(f"cannot read image {path}: {_first_line(exc)}") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def image_size_of(source: str) -> tuple[int, int] | None:
    """(height, width) of the first image under an image folder ``source`` (None for other sources)."""
    from PIL import Image

    root = Path(source)
    if not root.is_dir():
        return None
    for file in sorted(root.rglob("*")):
        if file.suffix.lower() in IMAGE_SUFFIXES:
            try:
                with Image.open(file) as image:
                    return image.size[1], image.size[0]
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise UserDataError(f"cannot read image {file}: {_first_line(exc)}") from None
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------- .npz
def _npz(path: Path, val_fraction: float, seed: int) -> UserData:
    from compressor.core.feeds import read_npz

    arrays = read_npz(path, error=UserDataError)
    if "x" not in arrays:
        raise UserDataError(f"data {path}: no 'x' array (it holds: {', '.join(sorted(arrays)) or 'nothing'})")
    train = _array_set(arrays["x"], arrays.get("y"), f"{path} x/y")
    if "x_val" in arrays:
        val = _array_set(arrays["x_val"], arrays.get("y_val"), f"{path} x_val/y_val")
        if (train.labels is None) != (val.labels is None):
            raise UserDataError(f"data {path}: give labels for both splits (y and y_val) or for neither")
        return UserData(train, val, (), {"kind": "given", "train": "x", "val": "x_val"}, str(path))
    return _held_out(train, (), val_fraction, seed, str(path))


def _array_set(x: Any, y: Any, what: str) -> ArraySet:
    x = np.asarray(x)
    if x.ndim < 2:
        raise UserDataError(f"data {what}: inputs need a sample axis and at least one more, got shape {x.shape}")
    x = x.astype(np.float32) if x.dtype.kind == "f" or x.dtype == np.uint8 else x
    if y is None:
        return ArraySet(x)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != x.shape[0] or y.dtype.kind not in "iu":
        raise UserDataError(f"data {what}: labels must be {x.shape[0]} integers, got {y.dtype} of shape {y.shape}")
    return ArraySet(x, y.astype(np.int64))


# ---------------------------------------------------------------- user code
def _user_function(spec: str, val_fraction: float, seed: int) -> UserData:
    from compressor.core.user_code import load_callable

    function = load_callable(spec, error=UserDataError, what="data function")
    try:
        result = function()
    except Exception as exc:  # user code can raise anything
        raise UserDataError(f"data function '{spec}' raised {type(exc).__name__}: {exc}") from None
    if isinstance(result, Mapping):
        if "train" not in result:
            raise UserDataError(f"data function '{spec}' returned a mapping without 'train'")
        train = samples_to_arrays(result["train"], f"{spec} train")
        if result.get("val") is None:
            return _held_out(train, (), val_fraction, seed, spec)
        val = samples_to_arrays(result["val"], f"{spec} val")
        return UserData(train, val, (), {"kind": "given", "train": "train", "val": "val"}, spec)
    return _held_out(samples_to_arrays(result, spec), (), val_fraction, seed, spec)


def samples_to_arrays(samples: Any, what: str) -> ArraySet:
    """A Dataset / iterable of ``(x, y)`` or ``x`` samples, an ``(x, y)`` pair of arrays, or an ``ArraySet``,
    as one ``ArraySet``."""
    if isinstance(samples, ArraySet):
        return samples
    if isinstance(samples, tuple) and len(samples) == 2 and all(hasattr(a, "shape") for a in samples) \
            and len(_numpy(samples[1]).shape) == 1 and len(_numpy(samples[0]).shape) >= 2:
        return _array_set(_numpy(samples[0]), _numpy(samples[1]), what)
    xs, ys = [], []
    for item in _iterate(samples, what):
        if isinstance(item, (tuple, list)):
            if len(item) != 2:
                raise UserDataError(f"data {what}: a sample must be x or (x, y), got {len(item)} items")
            xs.append(_numpy(item[0]))
            ys.append(int(_numpy(item[1])))
        else:
            xs.append(_numpy(item))
    if not xs:
        raise UserDataError(f"data {what}: no samples")
    if ys and len(ys) != len(xs):
        raise UserDataError(f"data {what}: some samples have labels and some do not")
    shapes = {x.shape for x in xs}
    if len(shapes) > 1:
        raise UserDataError(f"data {what}: samples have different shapes {sorted(shapes)[:2]}")
    return _array_set(np.stack(xs), np.asarray(ys, dtype=np.int64) if ys else None, what)


def batches_to_arrays(batches: Iterable, what: str) -> ArraySet:
    """A ``DataLoader`` (or any iterable of ``(x_batch, y_batch)`` or ``x_batch``) as one ``ArraySet``."""
    xs, ys = [], []
    for item in batches:
        if isinstance(item, (tuple, list)):
            if len(item) < 1 or len(item) > 2:
                raise UserDataError(f"data {what}: a batch must be x or (x, y), got {len(item)} items")
            xs.append(_numpy(item[0]))
            if len(item) == 2:
                ys.append(_numpy(item[1]).reshape(-1))
        else:
            xs.append(_numpy(item))
    if not xs:
        raise UserDataError(f"data {what}: no batches")
    if ys and len(ys) != len(xs):
        raise UserDataError(f"data {what}: some batches have labels and some do not")
    return _array_set(np.concatenate(xs), np.concatenate(ys) if ys else None, what)


def _iterate(samples: Any, what: str) -> Iterable:
    if hasattr(samples, "__len__") and hasattr(samples, "__getitem__"):
        return (samples[i] for i in range(len(samples)))
    if hasattr(samples, "__iter__"):
        return iter(samples)
    raise UserDataError(f"data {what}: expected a Dataset or an iterable of samples, got {type(samples).__name__}")


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


# ---------------------------------------------------------------- splitting
def _held_out(data: ArraySet, classes: tuple[str, ...], fraction: float, seed: int, source: str) -> UserData:
    """A seeded random ``fraction`` of ``data`` held out for validation."""
    if not 0.0 < fraction < 1.0:
        raise UserDataError(f"data.val_fraction: must be between 0 and 1, got {fraction}")
    order = np.random.default_rng(seed).permutation(len(data))
    count = max(1, int(round(len(data) * fraction)))
    if count >= len(data):
        raise UserDataError(f"data {source}: {len(data)} samples are too few to hold out a validation split")
    return UserData(data.subset(np.sort(order[count:])), data.subset(np.sort(order[:count])), classes,
                    {"kind": "held_out", "fraction": fraction, "seed": seed}, source)


def _limit(data: UserData, max_train: int | None, max_val: int | None) -> UserData:
    def cut(split: ArraySet, limit: int | None) -> ArraySet:
        if limit is None or len(split) <= limit:
            return split
        return split.subset(np.sort(np.random.default_rng(0).permutation(len(split))[:limit]))

    return UserData(cut(data.train, max_train), cut(data.val, max_val), data.classes, data.split, data.source)


def _class_counts(labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {(classes[v] if v < len(classes) else str(v)): int(c) for v, c in zip(values, counts)}
