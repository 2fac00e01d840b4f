"""Adapters from the one contract (a list of feed dicts) to each toolkit's calibration interface."""
from __future__ import annotations

from pathlib import Path
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


def nncf_dataset(feeds: Sequence[Feed]):
    """An ``nncf.Dataset`` whose items are the feed dicts OpenVINO models accept directly."""
    import nncf

    return nncf.Dataset(list(feeds))


def tensorrt_calibrator(feeds: Sequence[Feed], cache_file: str | Path, input_order: Sequence[str]):
    """A TensorRT (<= 10) ``IInt8EntropyCalibrator2`` over ``feeds`` with a calibration cache file.

    TensorRT 11 removed implicit calibration: use a Q/DQ ONNX there instead.
    """
    import tensorrt as trt

    from compressor.targets.cuda import DeviceBuffers

    class FeedCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.feeds, self.position = list(feeds), 0
            self.cache_file = Path(cache_file)
            self.buffers = DeviceBuffers({n: self.feeds[0][n] for n in input_order})

        def get_batch_size(self) -> int:
            return int(self.feeds[0][input_order[0]].shape[0])

        def get_batch(self, names):
            if self.position >= len(self.feeds):
                return None
            feed = self.feeds[self.position]
            self.position += 1
            return [self.buffers.upload(name, feed[name]) for name in names]

        def read_calibration_cache(self):
            return self.cache_file.read_bytes() if self.cache_file.exists() else None

        def write_calibration_cache(self, cache) -> None:
            self.cache_file.write_bytes(bytes(cache))

    return FeedCalibrator()
