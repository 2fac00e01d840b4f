"""Tracking data: UAV123-style and GOT-10k-style loaders on sequences the tests write, malformed ground truth
through the CLI (one line, exit 2), the built-in semi-synthetic sequences and the pair sampler."""
import textwrap

import numpy as np
import pytest
from PIL import Image

from compressor.distill.data.tracking import (
    SequenceFormatError,
    load_sequence,
    load_sequences,
)
from tests.support import assert_one_line_error


def write_frames(folder, count, size=(48, 64), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, size=(*size, 3), dtype=np.uint8)).save(folder / f"{i + 1:04d}.jpg")


def write_uav(root, name="bird1", lines=("10,12,8,6", "11\t12\t8\t6", "NaN,NaN,NaN,NaN", "13 14 8 7")):
    write_frames(root / name / "img", len(lines))
    (root / name / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
    return root / name


def write_got(root, name="GOT-10k_Train_000001", count=4, absence=(0, 0, 1, 0), cover=(8, 4, 0, 6)):
    write_frames(root / name, count, seed=1)
    (root / name / "groundtruth.txt").write_text("\n".join(f"{5 + i},{6 + i},10.5,9" for i in range(count)) + "\n")
    if absence is not None:
        (root / name / "absence.label").write_text("\n".join(map(str, absence)) + "\n")
    if cover is not None:
        (root / name / "cover.label").write_text("\n".join(map(str, cover)) + "\n")
    return root / name


def test_uav123_style_sequence(tmp_path):
    seq = load_sequence(write_uav(tmp_path))
    assert seq.name == "bird1" and len(seq) == 4 and seq.frame(0).shape == (48, 64, 3)
    np.testing.assert_array_equal(seq.boxes[[0, 1, 3]], [[10, 12, 8, 6], [11, 12, 8, 6], [13, 14, 8, 7]])
    np.testing.assert_array_equal(seq.absent, [False, False, True, False])  # the NaN line
    assert seq.occlusion is None and list(seq.visible) == [0, 1, 3]


def test_got10k_style_sequence(tmp_path):
    seq = load_sequence(write_got(tmp_path))
    assert len(seq) == 4 and seq.boxes[0].tolist() == [5, 6, 10.5, 9]
    np.testing.assert_array_equal(seq.absent, [False, False, True, False])
    np.testing.assert_allclose(seq.occlusion, [0, 0.5, 1.0, 0.25])  # 1 - cover / 8


def test_folder_of_sequences_sorted_by_name(tmp_path):
    write_got(tmp_path, "b_seq", absence=None, cover=None)
    write_uav(tmp_path, "a_seq")
    (tmp_path / "notes").mkdir()
    assert [s.name for s in load_sequences(tmp_path)] == ["a_seq", "b_seq"]
    assert load_sequences(tmp_path / "b_seq")[0].absent.sum() == 0


@pytest.mark.parametrize("lines, problem", [
    (("10,12,8,6", "11,12,8", "1,2,3,4", "1,2,3,4"), "line 2: expected 4 numbers"),
    (("10,12,8,6", "a,b,c,d", "1,2,3,4", "1,2,3,4"), "line 2: expected 4 numbers"),
    (("10,12,8,6",), "4 frames but 1 ground-truth boxes"),
    (("NaN,NaN,NaN,NaN", "1,2,3,4", "1,2,3,4", "1,2,3,4"), "visible in the first frame"),
])
def test_malformed_ground_truth(tmp_path, lines, problem):
    folder = write_uav(tmp_path, lines=("1,1,1,1",) * 4)
    (folder / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(SequenceFormatError, match=problem):
        load_sequence(folder)


def test_bad_labels_and_empty_folder(tmp_path):
    folder = write_got(tmp_path, absence=(0, 0, 1))
    with pytest.raises(SequenceFormatError, match="3 lines but the ground truth has 4"):
        load_sequence(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SequenceFormatError, match="no tracking sequences"):
        load_sequences(empty)


RECIPE = """
name: bad-data
task: tracking
teacher: {model: ortrack_cpu, train: {iterations: 1, batch: 2}}
student: {model: ortrack_d_cpu, train: {iterations: 1, batch: 2}}
"""


def test_cli_run_reports_malformed_ground_truth_in_one_line(cli, tmp_path):
    data = tmp_path / "data"
    write_got(data, "seq_ok")
    bad = write_uav(data, "seq_bad")
    (bad / "groundtruth_rect.txt").write_text("10,12,8,6\n")  # one line for four frames
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(RECIPE))
    result = cli("run", recipe, "--data", data, "--out", tmp_path / "out")
    assert_one_line_error(result, "seq_bad", "4 frames but 1 ground-truth boxes")
    (bad / "groundtruth_rect.txt").write_text("10,12,8,6\n1,2,3\n1,2,3,4\n1,2,3,4\n")
    result = cli("run", recipe, "--data", data, "--out", tmp_path / "out")
    assert_one_line_error(result, "groundtruth_rect.txt line 2: expected 4 numbers")
    assert not (tmp_path / "out" / "report.json").exists()


def test_builtin_aerial_sequences_are_exact_and_occluded():
    from compressor.distill.data.aerial import AerialConfig, aerial_sequence

    config = AerialConfig(length=50)
    seqs = [aerial_sequence(i, "val", config) for i in range(4)]
    again = aerial_sequence(0, "val", config)
    np.testing.assert_array_equal(seqs[0].frames, again.frames)
    np.testing.assert_array_equal(seqs[0].boxes, again.boxes)
    for seq in seqs:
        assert seq.frames.shape == (50, 192, 256, 3) and seq.frames.dtype == np.uint8
        assert np.all(seq.boxes == np.round(seq.boxes)) and np.all(seq.boxes[:, 2:] >= 3)
        assert seq.occlusion[0] == 0 and np.all((0 <= seq.occlusion) & (seq.occlusion <= 1))
        assert len(np.unique(seq.boxes[:, 2] * seq.boxes[:, 3])) > 1  # scale changes
    occlusion = np.concatenate([s.occlusion for s in seqs])
    assert (occlusion > 0.99).any() and ((occlusion > 0.05) & (occlusion < 0.95)).any()
    train = aerial_sequence(0, "train", config)
    assert not np.array_equal(train.frames[0], seqs[0].frames[0])


def test_pair_sampler_geometry():
    from compressor.distill.data.pairs import PairConfig, PairSampler
    from compressor.distill.data.tracking import TrackingSequence

    frames = np.zeros((6, 120, 160, 3), np.uint8)
    boxes = np.array([[40 + 5 * i, 30 + 2 * i, 20, 16] for i in range(6)], np.float64)
    for frame, (x, y, w, h) in zip(frames, boxes.astype(int)):
        frame[y:y + h, x:x + w] = 255
    seq = TrackingSequence("square", frames, boxes)
    config = PairConfig(template_size=32, search_size=64, center_jitter=0, scale_jitter=0, flip=0, brightness=0)
    template, search, box = PairSampler([seq], config).batch(4, np.random.default_rng(0))
    assert template.shape == (4, 3, 32, 32) and search.shape == (4, 3, 64, 64) and box.shape == (4, 4)
    np.testing.assert_allclose(box[:, 0] + box[:, 2] / 2, 0.5, atol=1e-6)  # unjittered: centred
    np.testing.assert_allclose(box[:, 2] * box[:, 3], 1 / 16, atol=1e-6)   # side = 4 x sqrt(w h)
    bright = search[:, 0] > 0  # the white square, normalised
    rows, cols = np.nonzero(bright[0].numpy())
    assert abs((cols.min() + cols.max() + 1) / 2 / 64 - 0.5) < 0.03
    jittered = PairSampler([seq], PairConfig(template_size=32, search_size=64, flip=1.0))
    _, _, fbox = jittered.batch(8, np.random.default_rng(1))
    fbox = fbox.numpy()
    assert np.all(fbox[:, 0] + fbox[:, 2] / 2 > 0) and np.all(fbox[:, 0] + fbox[:, 2] / 2 < 1)


def test_builtin_sequences_cached_on_disk_read_back_exactly(tmp_path):
    from compressor.distill.data.aerial import AerialConfig, aerial_sequences

    config = AerialConfig(width=64, height=48, length=6, target_side=(8, 10))
    memory = aerial_sequences("train", count=2, length=6, seed=3, config=config)
    disk = aerial_sequences("train", count=2, length=6, seed=3, config=config, cache_dir=tmp_path)
    again = aerial_sequences("train", count=2, length=6, seed=3, config=config, cache_dir=tmp_path)
    for a, b, c in zip(memory, disk, again):
        assert isinstance(b.frames, list) and len(b) == 6
        np.testing.assert_array_equal(a.frame(5), b.frame(5))
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_allclose(a.occlusion, c.occlusion, atol=1e-4)
