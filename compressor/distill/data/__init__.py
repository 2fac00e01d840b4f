"""Training data. ``compressor.distill.data.sr``: super-resolution pairs from image folders or scikit-image."""
from compressor.distill.data.sr import (
                                SKIMAGE_TRAIN,
                                SKIMAGE_VAL,
                                DatasetError,
                                ImageFolderSRDataset,
                                SkimageSRDataset,
                                SRPair,
                                bicubic_downscale,
)

__all__ = ["SKIMAGE_TRAIN", "SKIMAGE_VAL", "DatasetError", "ImageFolderSRDataset", "SkimageSRDataset", "SRPair",
           "bicubic_downscale"]
