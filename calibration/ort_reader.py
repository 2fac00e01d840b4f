"""The calibration contract (a list of feed dicts) as ONNX Runtime's ``CalibrationDataReader`` (the shared Q/DQ
quantizer reads it). Toolkits' own adapters live with their targets (TensorRT's calibrator, NNCF's dataset)."""
from __future__ import annotations

from typing import Sequence

from compressor.core.feeds import Feed


def ort_reader(feeds: Sequence[Feed]):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``feeds`` (rewindable, sized)."""
    from onnxruntime.quantization import CalibrationDataReader

    class FeedReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds, self.position = list(feeds), 0

        def get_next(self):
            if self.position >= len(self.feeds):
                return None
            self.position += 1
            return self.feeds[self.position - 1]

        def rewind(self) -> None:
            self.position = 0

        def __len__(self) -> int:
            return len(self.feeds)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.feeds, self.position = list(feeds)[start_index:end_index], 0

    return FeedReader()
