"""Training pairs for a one-shot tracker: a template crop and a jittered search crop from one sequence.

As OSTrack/ORTrack sample them: pick a sequence (weighted by length), a template frame where the target is
clean, and a later search frame within ``max_interval`` where it is at most ``max_occlusion`` hidden. The
template is cropped at ``template_factor`` x the target side around its box; the search at
``search_factor`` x a jittered box (size ``wh * exp(N(0,1) * scale_jitter)``, centre moved by up to
``center_jitter / 2`` target sides). Joint horizontal flip and per-image brightness jitter follow. The box
is returned in the search crop's normalised ``(x, y, w, h)`` (it may stick out of [0, 1]). Crops use the
same numpy resampling as the runtime tracker (``compressor.runtime.tracker``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from compressor.distill.data.tracking import SequenceFormatError, TrackingSequence
from compressor.runtime.tracker import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    crop_resize,
    crop_side,
)


@dataclass(frozen=True)
class PairConfig:
    """Crop sizes, factors and augmentation of the training pairs."""

    template_size: int = 128
    search_size: int = 256
    template_factor: float = 2.0
    search_factor: float = 4.0
    max_interval: int = 50
    center_jitter: float = 3.0
    scale_jitter: float = 0.25
    flip: float = 0.5
    brightness: float = 0.2
    template_max_occlusion: float = 0.1
    max_occlusion: float = 0.5


class PairSampler:
    """Draws (template, search, box) training triples from ``sequences``.

    >>> sampler = PairSampler(sequences, PairConfig(template_size=64, search_size=128))  # doctest: +SKIP
    >>> template, search, boxes = sampler.batch(8, np.random.default_rng(0))             # doctest: +SKIP
    """

    def __init__(self, sequences: Sequence[TrackingSequence], config: PairConfig) -> None:
        self.sequences, self.config = list(sequences), config
        self._templates, self._searches, weights = [], [], []
        for seq in self.sequences:
            occlusion = seq.occlusion if seq.occlusion is not None else np.zeros(len(seq))
            self._templates.append(np.flatnonzero(~seq.absent & (occlusion <= config.template_max_occlusion)))
            self._searches.append(~seq.absent & (occlusion <= config.max_occlusion))
            weights.append(len(self._templates[-1]) if self._searches[-1].sum() > 1 else 0)
        total = float(sum(weights))
        if total == 0:
            raise SequenceFormatError("no sequence has a visible target in two frames to train on")
        self._weights = np.asarray(weights, np.float64) / total
        self._mean = np.asarray(IMAGENET_MEAN, np.float32) * 255
        self._std = np.asarray(IMAGENET_STD, np.float32) * 255

    def _frames(self, rng: np.random.Generator) -> tuple[TrackingSequence, int, int]:
        index = int(rng.choice(len(self.sequences), p=self._weights))
        seq, templates, searchable = self.sequences[index], self._templates[index], self._searches[index]
        for _ in range(20):
            t = int(rng.choice(templates))
            window = np.flatnonzero(searchable[t: t + self.config.max_interval + 1]) + t
            window = window[window != t] if len(window) > 1 else window
            if len(window):
                return seq, t, int(rng.choice(window))
        return seq, int(templates[0]), int(templates[0])

    def jitter(self, box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """OSTrack's search-box jitter: log-normal size, uniform centre shift."""
        c = self.config
        size = box[2:] * np.exp(rng.normal(size=2) * c.scale_jitter)
        offset = np.sqrt(np.prod(size)) * c.center_jitter * (rng.random(2) - 0.5)
        center = box[:2] + box[2:] / 2 + offset
        return np.concatenate([center - size / 2, size])

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One (template HWC, search HWC, box) triple; crops in 0..255 float32, box normalised to the search."""
        c = self.config
        seq, t, s = self._frames(rng)
        t_box, s_box = seq.boxes[t], seq.boxes[s]
        template = crop_resize(seq.frame(t), _center(t_box), crop_side(t_box, c.template_factor), c.template_size)
        jittered = self.jitter(s_box, rng)
        side = crop_side(jittered, c.search_factor)
        center = _center(jittered)
        search = crop_resize(seq.frame(s), center, side, c.search_size)
        box = np.array([(s_box[0] - center[0]) / side + 0.5, (s_box[1] - center[1]) / side + 0.5,
                        s_box[2] / side, s_box[3] / side], np.float32)
        if rng.random() < c.flip:
            template, search = template[:, ::-1], search[:, ::-1]
            box[0] = 1.0 - box[0] - box[2]
        template = template * rng.uniform(1 - c.brightness, 1 + c.brightness)
        search = search * rng.uniform(1 - c.brightness, 1 + c.brightness)
        return np.clip(template, 0, 255), np.clip(search, 0, 255), box

    def _to_tensor(self, crops: list[np.ndarray]) -> torch.Tensor:
        stacked = (np.stack(crops) - self._mean) / self._std
        return torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2), dtype=np.float32))

    def batch(self, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(template B x 3 x T x T, search B x 3 x S x S, boxes B x 4), normalised as the runtime does."""
        templates, searches, boxes = zip(*(self.sample(rng) for _ in range(size)))
        return self._to_tensor(list(templates)), self._to_tensor(list(searches)), torch.from_numpy(np.stack(boxes))

    def batches(self, size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Endless reproducible batches."""
        rng = np.random.default_rng(seed)
        while True:
            yield self.batch(size, rng)


def _center(box: np.ndarray) -> tuple[float, float]:
    return float(box[0] + box[2] / 2), float(box[1] + box[3] / 2)
