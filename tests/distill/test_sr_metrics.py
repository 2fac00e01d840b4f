"""SR metrics: Y-channel PSNR/SSIM (BT.601, shaved border) and RGB PSNR."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from compressor.core.errors import CompressError
from compressor.distill.metrics import (
    psnr_rgb,
    psnr_y,
    quantize,
    rgb_to_y,
    ssim_gray,
    ssim_y,
    to_hwc,
)


@pytest.fixture()
def image() -> np.ndarray:
    return np.random.default_rng(0).uniform(0.1, 0.9, size=(40, 48, 3))


def test_identical_images(image):
    assert psnr_rgb(image, image) == math.inf and psnr_y(image, image) == math.inf
    assert ssim_y(image, image) == pytest.approx(1.0, abs=1e-12)


def test_constant_offset_has_the_closed_form_psnr(image):
    d = 0.01
    assert psnr_rgb(image + d, image) == pytest.approx(40.0, abs=1e-9)
    # Y changes by (65.481 + 128.553 + 24.966) / 255 * d = 219/255 * d.
    assert psnr_y(image + d, image) == pytest.approx(-20 * math.log10(219 / 255 * d), abs=1e-9)


def test_bt601_luma_range():
    assert rgb_to_y(np.zeros((1, 1, 3)))[0, 0] == pytest.approx(16 / 255)
    assert rgb_to_y(np.ones((1, 1, 3)))[0, 0] == pytest.approx(235 / 255)


def test_border_is_shaved(image):
    noisy = image.copy()
    noisy[:4] = 0.0
    noisy[:, -4:] = 1.0
    assert psnr_y(noisy, image, shave=4) == math.inf
    assert psnr_rgb(noisy, image, shave=0) < 20


def test_ssim_matches_scikit_image_gaussian_ssim(image):
    noisy = np.clip(image + np.random.default_rng(1).normal(0, 0.05, image.shape), 0, 1)
    y_sr, y_hr = rgb_to_y(noisy[4:-4, 4:-4]), rgb_to_y(image[4:-4, 4:-4])
    reference = structural_similarity(y_sr, y_hr, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=1.0)
    assert ssim_y(noisy, image, shave=4) == pytest.approx(reference, abs=1e-10)
    assert ssim_gray(y_sr, y_hr) < 1.0


def test_bad_inputs_raise_typed_errors(image):
    with pytest.raises(CompressError, match="one shape"):
        psnr_y(image, image[:-1])
    with pytest.raises(CompressError, match="shave"):
        psnr_rgb(image, image, shave=30)
    with pytest.raises(CompressError, match="11x11"):
        ssim_y(image[:16, :16], image[:16, :16], shave=4)


def test_tensor_conversion_and_quantisation():
    tensor = torch.rand(1, 3, 5, 7)
    array = to_hwc(tensor)
    assert array.shape == (5, 7, 3) and np.allclose(array[..., 1], tensor[0, 1].numpy())
    q = quantize(np.array([-0.2, 0.5, 1.3, 0.1234]))
    assert np.allclose(q * 255, np.round(q * 255)) and q.min() == 0.0 and q.max() == 1.0
