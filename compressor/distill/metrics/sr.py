"""Super-resolution metrics as the SR papers compute them (BasicSR / NTIRE conventions).

Inputs are H x W x 3 float RGB arrays in [0, 1] (quantise to 8 bits first to match published
tables). ``psnr_y``/``ssim_y`` use the ITU-R BT.601 luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``
(on the 0..255 scale) with ``shave`` border pixels removed, usually the scale factor; ``psnr_rgb``
is the NTIRE ESR challenge metric (all three channels). SSIM uses the 11x11 Gaussian window
(sigma 1.5) over the valid region, with C1 = (0.01 L)^2 and C2 = (0.03 L)^2.

>>> import numpy as np
>>> hr = np.full((16, 16, 3), 0.5); sr = hr + 0.01
>>> round(psnr_rgb(sr, hr, shave=4), 6)
40.0
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from compressor.core.errors import CompressError

BT601_Y = np.array([65.481, 128.553, 24.966]) / 255.0  # weights over [0,1] RGB, giving Y in [16/255, 235/255]


class MetricInputError(CompressError, ValueError):
    """Images a metric cannot compare: different shapes, not H x W x 3, or nothing left after shaving."""


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of an H x W x 3 RGB image in [0, 1], as H x W in [16/255, 235/255]."""
    return image @ BT601_Y + 16.0 / 255.0


def _prepare(sr: np.ndarray, hr: np.ndarray, shave: int) -> tuple[np.ndarray, np.ndarray]:
    sr, hr = np.asarray(sr, dtype=np.float64), np.asarray(hr, dtype=np.float64)
    if sr.shape != hr.shape or sr.ndim != 3 or sr.shape[2] != 3:
        raise MetricInputError(f"SR metrics need two H x W x 3 images of one shape, got {sr.shape} and {hr.shape}")
    if shave < 0 or 2 * shave >= min(sr.shape[:2]):
        raise MetricInputError(f"shave {shave} leaves nothing of a {sr.shape[0]}x{sr.shape[1]} image")
    if shave:
        sr, hr = sr[shave:-shave, shave:-shave], hr[shave:-shave, shave:-shave]
    return sr, hr


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def psnr_rgb(sr: np.ndarray, hr: np.ndarray, *, shave: int = 4) -> float:
    """PSNR in dB over all three RGB channels (data range 1); ``inf`` for identical images."""
    return _psnr(*_prepare(sr, hr, shave))


def psnr_y(sr: np.ndarray, hr: np.ndarray, *, shave: int = 4) -> float:
    """PSNR in dB on the BT.601 Y channel (data range 1, i.e. 255 on the 8-bit scale); ``inf`` if identical."""
    sr, hr = _prepare(sr, hr, shave)
    return _psnr(rgb_to_y(sr), rgb_to_y(hr))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    window = np.exp(-(x**2) / (2 * sigma**2))
    return window / window.sum()


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable correlation keeping only positions where the whole window fits (like 'valid')."""
    out = ndimage.correlate1d(ndimage.correlate1d(image, window, axis=0), window, axis=1)
    r = len(window) // 2
    return out[r:-r, r:-r]


def ssim_gray(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two single-channel H x W images with data range 1 (BasicSR ``_ssim``); at least 11x11."""
    if min(a.shape) < 11:
        raise MetricInputError(f"SSIM needs at least 11x11 pixels, got {a.shape[0]}x{a.shape[1]}")
    c1, c2 = 0.01**2, 0.03**2
    w = _gaussian_window()
    mu_a, mu_b = _filter_valid(a, w), _filter_valid(b, w)
    var_a = _filter_valid(a * a, w) - mu_a**2
    var_b = _filter_valid(b * b, w) - mu_b**2
    cov = _filter_valid(a * b, w) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim_y(sr: np.ndarray, hr: np.ndarray, *, shave: int = 4) -> float:
    """SSIM on the BT.601 Y channel after shaving ``shave`` border pixels; 1.0 for identical images."""
    sr, hr = _prepare(sr, hr, shave)
    return ssim_gray(rgb_to_y(sr), rgb_to_y(hr))


def to_hwc(image) -> np.ndarray:
    """A 3 x H x W (or 1 x 3 x H x W) tensor/array as an H x W x 3 float64 numpy array."""
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    array = array[0] if array.ndim == 4 else array
    return np.ascontiguousarray(np.transpose(array, (1, 2, 0)), dtype=np.float64)


def quantize(image: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] and round to the 8-bit grid, as the challenge scripts do before scoring."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0
