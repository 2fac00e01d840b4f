"""TensorRT's (<= 10) implicit INT8 calibrator over the calibration contract (a list of feed dicts)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from compressor.core.feeds import Feed


def tensorrt_calibrator(feeds: Sequence[Feed], cache_file: str | Path, input_order: Sequence[str]):
    """A TensorRT (<= 10) ``IInt8EntropyCalibrator2`` over ``feeds`` with a calibration cache file.

    TensorRT 11 removed implicit calibration: use a Q/DQ ONNX there instead.
    """
    import tensorrt as trt

    from compressor.targets.tensorrt.cuda import DeviceBuffers

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
