"""Reusable layers: re-parameterisable convolutions and LoRA adapters."""
from compressor.models.layers.conv3xc import Conv3XC
from compressor.models.layers.conv_lora import (
    ConvLoRA,
    apply_conv_lora,
    mark_only_lora_trainable,
    merge_conv_lora,
)

__all__ = ["Conv3XC", "ConvLoRA", "apply_conv_lora", "mark_only_lora_trainable", "merge_conv_lora"]
