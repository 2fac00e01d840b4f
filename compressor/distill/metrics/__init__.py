"""Evaluation metrics. ``compressor.distill.metrics.sr``: PSNR/SSIM as the super-resolution papers compute them."""
from compressor.distill.metrics.sr import (
    MetricInputError,
    psnr_rgb,
    psnr_y,
    quantize,
    rgb_to_y,
    ssim_gray,
    ssim_y,
    to_hwc,
)

__all__ = ["MetricInputError", "psnr_rgb", "psnr_y", "quantize", "rgb_to_y", "ssim_gray", "ssim_y", "to_hwc"]
