#!/usr/bin/env python3
"""Numpy-only runtime of a center-head tracker (ORTrack / OSTrack): crop, normalise, run, decode, map back.

This one file serves the toolchain (training crops, evaluation through any engine) and deployment bundles
(copied as ``tracker.py`` next to the bundle's ``run.py``), so the device runs exactly what was measured.
It imports numpy and its runtime siblings only. The network is any object with ``infer(feed)`` (a toolchain
Runner) or ``run(feed)`` (a bundle backend) taking ``{"template", "search"}`` and returning ``score_map``,
``size_map``, ``offset_map``.

Geometry: a crop of side ``sqrt(w * h) * factor`` centred on the box centre, zero outside the image,
resized bilinearly to the network size with pixel-centre alignment and no rounding, so mapping a crop
coordinate back to the frame is exact: ``x_frame = cx_prev + (x_crop / out - 0.5) * side``.

    python tracker.py --frames frames.npy --init 10,20,30,40 --output boxes.txt   # in a bundle folder

>>> tracker = Tracker(network, TrackerConfig(template_size=128, search_size=256))  # doctest: +SKIP
>>> tracker.initialize(frame0, (x, y, w, h)); box = tracker.track(frame1)           # doctest: +SKIP
"""
from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if not __package__:  # a script in a bundle folder (also under `python -I`): the folder's files form one package
    import importlib.machinery as _machinery

    class _SourceOnly(_machinery.SourceFileLoader):  # siblings compile from their .py: byte-code never read
        def get_code(self, fullname):
            path = self.get_filename(fullname)
            return self.source_to_code(self.get_data(path), path)

    _FOLDER = str(Path(__file__).resolve().parent)
    sys.dont_write_bytecode = True  # nor written; and no __pycache__ or native module in the folder is imported
    sys.path_importer_cache[_FOLDER] = _machinery.FileFinder(_FOLDER, (_SourceOnly, [".py"]))
    __package__ = "edge_compress_bundle"
    sys.modules.setdefault(__package__, types.ModuleType(__package__)).__path__ = [_FOLDER]

from .backends import open_backend  # noqa: E402  (siblings: after the package is set up)
from .bundle import load_manifest  # noqa: E402
from .errors import OneLineParser, int_between, print_error  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OUTPUTS = ("score_map", "size_map", "offset_map")


@dataclass(frozen=True)
class TrackerConfig:
    """Crop sizes and factors, normalisation and post-processing of the tracker."""

    template_size: int = 128
    search_size: int = 256
    template_factor: float = 2.0
    search_factor: float = 4.0
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    window: bool = True  # multiply the score map by a Hann window (ORTrack's only motion prior)
    clip_margin: float = 10.0
    min_size: float = 2.0  # smallest box side kept as state (pixels), so a crop never collapses


def resample(image: np.ndarray, x0: float, y0: float, step_x: float, step_y: float, out_w: int,
             out_h: int) -> np.ndarray:
    """Bilinear samples of ``image`` on the grid ``x0 + (j + 0.5) * step_x - 0.5`` (columns j < ``out_w``) by
    ``y0 + (i + 0.5) * step_y - 0.5`` (rows i < ``out_h``); outside the image counts as 0. Float32 H x W x C."""
    img = image if image.ndim == 3 else image[:, :, None]
    height, width = img.shape[:2]
    ys = y0 + (np.arange(out_h) + 0.5) * step_y - 0.5
    xs = x0 + (np.arange(out_w) + 0.5) * step_x - 0.5
    yi, xi = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    wy, wx = (ys - yi).astype(np.float32), (xs - xi).astype(np.float32)
    result = np.zeros((out_h, out_w, img.shape[2]), np.float32)
    for dy, fy in ((0, 1 - wy), (1, wy)):
        rows = yi + dy
        ry = np.where((rows >= 0) & (rows < height), fy, 0).astype(np.float32)
        rows = np.clip(rows, 0, height - 1)
        for dx, fx in ((0, 1 - wx), (1, wx)):
            cols = xi + dx
            rx = np.where((cols >= 0) & (cols < width), fx, 0).astype(np.float32)
            cols = np.clip(cols, 0, width - 1)
            result += img[rows[:, None], cols[None, :]].astype(np.float32) * (ry[:, None] * rx[None, :])[:, :, None]
    return result


def crop_resize(image: np.ndarray, center: tuple[float, float], side: float, out: int) -> np.ndarray:
    """Bilinear crop of the square ``side`` x ``side`` around ``center`` (x, y) resized to ``out`` x ``out``.

    Pixel (i, j) of the output samples the frame at ``x0 + (j + 0.5) * side / out - 0.5`` (and the same for
    y), with ``x0 = cx - side / 2``; outside the frame counts as 0 (zero padding). Returns float32 H x W x C.
    """
    step = side / out
    return resample(image, center[0] - side / 2, center[1] - side / 2, step, step, out, out)


def crop_side(box: tuple[float, float, float, float], factor: float) -> float:
    """Side of the square crop around ``box`` (x, y, w, h): ``sqrt(w * h) * factor``."""
    return math.sqrt(max(box[2], 1e-6) * max(box[3], 1e-6)) * factor


def box_center(box) -> tuple[float, float]:
    """Centre (x, y) of ``box`` (x, y, w, h)."""
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def normalize(crop: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """H x W x 3 in 0..255 -> 1 x 3 x H x W float32, ImageNet-normalised."""
    chw = (crop / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(chw.transpose(2, 0, 1)[None], dtype=np.float32)


def hann2d(size: int) -> np.ndarray:
    """Outer product of two centred Hann windows ``0.5 * (1 - cos(2 pi k / (size + 1)))``, k = 1..size."""
    w = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, size + 1) / (size + 1)))
    return np.outer(w, w).astype(np.float32)


def decode(score: np.ndarray, size: np.ndarray, offset: np.ndarray,
           window: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(cx, cy, w, h) in [0, 1] of the search crop at the (windowed) score peak, and the raw peak score.

    ``score`` is 1 x g x g (or g x g), ``size`` and ``offset`` 2 x g x g; token t sits at (t // g, t % g).
    """
    score = score.reshape(score.shape[-2:])
    grid = score.shape[-1]
    response = score * window if window is not None else score
    idx = int(np.argmax(response))
    row, col = divmod(idx, grid)
    cx = (col + float(offset[0, row, col])) / grid
    cy = (row + float(offset[1, row, col])) / grid
    return np.array([cx, cy, size[0, row, col], size[1, row, col]], np.float64), float(score[row, col])


def map_back(pred: np.ndarray, center: tuple[float, float], side: float) -> np.ndarray:
    """Normalised (cx, cy, w, h) in a crop of ``side`` around ``center`` -> frame (x, y, w, h)."""
    cx = center[0] + (pred[0] - 0.5) * side
    cy = center[1] + (pred[1] - 0.5) * side
    w, h = pred[2] * side, pred[3] * side
    return np.array([cx - w / 2, cy - h / 2, w, h], np.float64)


def clip_box(box: np.ndarray, height: int, width: int, margin: float) -> np.ndarray:
    """Keep at least ``margin`` pixels of the box inside the frame (OSTrack's ``clip_box``)."""
    x1, y1 = min(max(0.0, box[0]), width - margin), min(max(0.0, box[1]), height - margin)
    x2, y2 = min(max(margin, box[0] + box[2]), width), min(max(margin, box[1] + box[3]), height)
    return np.array([x1, y1, max(x2 - x1, 1.0), max(y2 - y1, 1.0)], np.float64)


def run_network(network, feed: dict) -> dict:
    """Call a toolchain Runner (``infer``) or a bundle backend (``run``)."""
    call = network.infer if hasattr(network, "infer") else network.run
    return call(feed)


class Tracker:
    """One-pass tracker: template from the first frame (no update), search around the previous box."""

    def __init__(self, network, config: TrackerConfig = TrackerConfig()) -> None:
        self.network, self.config = network, config
        self.window = None
        self.template = None
        self.state = None
        self.last_score = 0.0

    def initialize(self, frame: np.ndarray, box) -> None:
        """Crop the template (``template_factor`` x the target side) around ``box`` (x, y, w, h)."""
        c = self.config
        self.state = np.asarray(box, np.float64)
        crop = crop_resize(frame, box_center(self.state), crop_side(self.state, c.template_factor), c.template_size)
        self.template = normalize(crop, c.mean, c.std)

    def track(self, frame: np.ndarray) -> np.ndarray:
        """The target's box (x, y, w, h) in ``frame``."""
        c = self.config
        center, side = box_center(self.state), crop_side(self.state, c.search_factor)
        search = normalize(crop_resize(frame, center, side, c.search_size), c.mean, c.std)
        out = run_network(self.network, {"template": self.template, "search": search})
        score, size, offset = (np.asarray(out[name])[0] for name in OUTPUTS)
        if self.window is None or self.window.shape[0] != score.shape[-1]:
            self.window = hann2d(score.shape[-1]) if c.window else None
        pred, self.last_score = decode(score, size, offset, self.window)
        box = clip_box(map_back(pred, center, side), frame.shape[0], frame.shape[1], c.clip_margin)
        box[2:] = np.maximum(box[2:], c.min_size)
        self.state = box
        return box.copy()


def track_sequence(network, frames, init_box, config: TrackerConfig = TrackerConfig()) -> np.ndarray:
    """Boxes (N x 4, x y w h) for every frame; frame 0 gets ``init_box``."""
    tracker = Tracker(network, config)
    boxes = [np.asarray(init_box, np.float64)]
    for i, frame in enumerate(frames):
        if i == 0:
            tracker.initialize(frame, init_box)
        else:
            boxes.append(tracker.track(frame))
    return np.stack(boxes)


def config_from_manifest(manifest: dict) -> TrackerConfig:
    """Template and search sizes from a bundle manifest's input shapes."""
    sizes = {spec["name"]: int(spec["shape"][-1]) for spec in manifest["inputs"]}
    return TrackerConfig(template_size=sizes["template"], search_size=sizes["search"])


def main(argv=None) -> int:
    """Track a target through frames stored as a ``.npy`` (N x H x W x 3 uint8) with the bundle's model."""
    parser = OneLineParser(description="Track a target with this bundle's model (numpy + runtime only).")
    parser.add_argument("--frames", required=True, help=".npy file of N x H x W x 3 uint8 frames")
    parser.add_argument("--init", required=True, help="x,y,w,h of the target in frame 0")
    parser.add_argument("--output", help="write one x,y,w,h line per frame here (default: stdout)")
    parser.add_argument("--threads", type=int_between(1, 1024), default=None)
    args = parser.parse_args(argv)
    try:
        folder = Path(__file__).resolve().parent
        manifest = load_manifest(folder)
        frames = np.load(args.frames, mmap_mode="r")
        init = [float(v) for v in args.init.split(",")]
        if len(init) != 4 or frames.ndim != 4:
            raise ValueError("--init needs x,y,w,h and --frames an N x H x W x 3 array")
        boxes = track_sequence(open_backend(folder, manifest, args.threads), frames, init,
                               config_from_manifest(manifest))
    except (OSError, ValueError, KeyError, ImportError) as exc:
        return print_error(exc)
    text = "\n".join(",".join(f"{v:.2f}" for v in box) for box in boxes) + "\n"
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
