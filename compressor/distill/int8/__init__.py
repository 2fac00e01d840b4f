"""The INT8 stage: quantization-aware fine-tuning and the accuracy gate, outside the orchestrator.

``stage`` (the stage a run calls), ``schemes`` (each INT8 exporter: its QAT mirror, ranking, build settings),
``qat`` (the fine-tuning), ``fake_quant`` and ``ranges`` (the fake quantizer and its activation ranges),
``layers`` (what it touches), ``record`` (what the run report holds).
"""
