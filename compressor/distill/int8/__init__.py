"""The INT8 stage: quantization-aware fine-tuning and the accuracy gate, outside the orchestrator."""
