"""The numpy tracker runtime: crop geometry, decoding, mapping back, and a full tracking loop whose network
reads the target out of the search crop it is given (so every coordinate transform is exercised)."""
import numpy as np
import pytest

from compressor.runtime.tracker import (
    Tracker,
    TrackerConfig,
    clip_box,
    crop_resize,
    decode,
    hann2d,
    map_back,
    track_sequence,
)


def test_crop_identity_and_zero_padding():
    image = np.arange(8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3)
    np.testing.assert_allclose(crop_resize(image, (4, 4), 8, 8), image)
    padded = crop_resize(np.full((8, 8, 3), 100, np.uint8), (4, 4), 16, 16)
    assert padded[0, 0, 0] == 0 and padded[8, 8, 0] == 100  # outside the frame is 0


def test_crop_map_back_round_trip():
    box = np.array([37.0, 21.5, 14.0, 9.0])                # x, y, w, h in the frame
    center, side = (50.3, 30.1), 61.7                      # some search crop around it
    normalised = np.array([(box[0] + box[2] / 2 - center[0]) / side + 0.5,
                           (box[1] + box[3] / 2 - center[1]) / side + 0.5, box[2] / side, box[3] / side])
    np.testing.assert_allclose(map_back(normalised, center, side), box, atol=1e-9)


def test_decode_reads_the_windowed_peak():
    grid = 4
    score = np.full((1, grid, grid), 0.1, np.float32)
    score[0, 0, 0], score[0, 2, 1] = 0.9, 0.8               # the corner peak loses to the window
    size = np.zeros((2, grid, grid), np.float32)
    size[:, 2, 1] = [0.25, 0.5]
    offset = np.zeros((2, grid, grid), np.float32)
    offset[:, 2, 1] = [0.5, 0.25]
    pred, peak = decode(score, size, offset, hann2d(grid))
    np.testing.assert_allclose(pred, [(1 + 0.5) / 4, (2 + 0.25) / 4, 0.25, 0.5])
    assert peak == pytest.approx(0.8)
    assert decode(score, size, offset)[1] == pytest.approx(0.9)  # no window: the corner
    np.testing.assert_allclose(hann2d(16)[7:9, 7:9], hann2d(16)[7:9, 7:9].T)
    assert hann2d(16).max() < 1 and hann2d(16).min() > 0


def test_clip_box_keeps_a_margin_inside():
    np.testing.assert_allclose(clip_box(np.array([-20.0, 5, 30, 10]), 100, 100, 10), [0, 5, 10, 10])
    np.testing.assert_allclose(clip_box(np.array([95.0, 5, 30, 10]), 100, 100, 10), [90, 5, 10, 10])


class OracleNetwork:
    """Finds the bright square in the search crop and answers with center-head maps encoding its box."""

    def __init__(self, grid: int) -> None:
        self.grid, self.calls = grid, 0

    def run(self, feed):
        self.calls += 1
        search = feed["search"][0].mean(axis=0)
        size = search.shape[0]
        mask = search > search.min() + 0.5 * (search.max() - search.min())
        rows, cols = np.nonzero(mask)
        x0, x1, y0, y1 = cols.min(), cols.max() + 1, rows.min(), rows.max() + 1
        cx, cy, w, h = (x0 + x1) / 2 / size, (y0 + y1) / 2 / size, (x1 - x0) / size, (y1 - y0) / size
        g = self.grid
        row, col = min(int(cy * g), g - 1), min(int(cx * g), g - 1)
        score = np.full((1, 1, g, g), 1e-4, np.float32)
        score[0, 0, row, col] = 0.99
        size_map, offset = np.zeros((1, 2, g, g), np.float32), np.zeros((1, 2, g, g), np.float32)
        size_map[0, :, row, col] = [w, h]
        offset[0, :, row, col] = [cx * g - col, cy * g - row]
        return {"score_map": score, "size_map": size_map, "offset_map": offset}


def test_tracker_follows_a_moving_square_through_the_crop_geometry():
    frames, boxes = [], []
    for i in range(12):
        frame = np.zeros((120, 160, 3), np.uint8)
        x, y, w, h = 30 + 4 * i, 40 + 2 * i, 16 + i // 3, 12
        frame[y:y + h, x:x + w] = 255
        frames.append(frame)
        boxes.append([x, y, w, h])
    boxes = np.asarray(boxes, float)
    net = OracleNetwork(grid=8)
    config = TrackerConfig(template_size=32, search_size=128)
    pred = track_sequence(net, frames, boxes[0], config)
    assert net.calls == 11 and pred.shape == (12, 4)
    np.testing.assert_allclose(pred, boxes, atol=1.0)       # every transform round-trips to the frame


def test_tracker_uses_infer_when_available():
    class Runner:
        def __init__(self):
            self.inner = OracleNetwork(8)

        def infer(self, feed):
            assert feed["template"].shape == (1, 3, 32, 32) and feed["template"].dtype == np.float32
            return self.inner.run(feed)

    frame = np.zeros((64, 64, 3), np.uint8)
    frame[20:30, 20:30] = 255
    tracker = Tracker(Runner(), TrackerConfig(template_size=32, search_size=64))
    tracker.initialize(frame, (20, 20, 10, 10))
    np.testing.assert_allclose(tracker.track(frame), [20, 20, 10, 10], atol=0.6)
