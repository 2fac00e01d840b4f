"""The user's own data: image folders, .npz arrays and module:function, with given or held-out splits."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from compressor.distill.data.user import (
    ImageLayout,
    UserDataError,
    batches_to_arrays,
    load_user_data,
)


def _images(root, classes=("cat", "dog"), per_class=3, size=(12, 10)):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((size[1], size[0], 3), 40 * c + i, np.uint8)).save(root / name / f"{i}.png")


def test_image_folder_with_given_split_is_resized_to_the_layout(tmp_path):
    _images(tmp_path / "train")
    _images(tmp_path / "val", per_class=1)
    data = load_user_data(str(tmp_path), layout=ImageLayout(channels=1, size=(8, 8)), val_fraction=0.2, seed=0)
    assert data.train.inputs.shape == (6, 1, 8, 8) and data.train.inputs.dtype == np.float32
    assert data.val.labels.tolist() == [0, 1] and data.classes == ("cat", "dog")
    assert 0.0 <= data.train.inputs.min() and data.train.inputs.max() <= 1.0
    summary = data.summary()
    assert summary["split"]["kind"] == "given" and summary["counts"] == {"train": 6, "val": 2}
    assert summary["class_counts"]["train"] == {"cat": 3, "dog": 3}


def test_class_folders_without_split_hold_out_a_seeded_fraction(tmp_path):
    _images(tmp_path, per_class=5)
    a = load_user_data(str(tmp_path), layout=ImageLayout(), val_fraction=0.2, seed=3)
    b = load_user_data(str(tmp_path), layout=ImageLayout(), val_fraction=0.2, seed=3)
    assert len(a.train) == 8 and len(a.val) == 2 and a.train.inputs.shape[1:] == (3, 10, 12)
    assert np.array_equal(a.val.inputs, b.val.inputs)
    assert a.summary()["split"] == {"kind": "held_out", "fraction": 0.2, "seed": 3}


def test_npz_with_and_without_validation_arrays(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "given.npz", x=rng.random((10, 4)), y=np.arange(10) % 3, x_val=rng.random((4, 4)),
             y_val=np.arange(4) % 3)
    given = load_user_data(str(tmp_path / "given.npz"), layout=ImageLayout(), val_fraction=0.2, seed=0)
    assert (len(given.train), len(given.val)) == (10, 4) and given.train.inputs.dtype == np.float32
    np.savez(tmp_path / "free.npz", x=rng.random((10, 4)))
    free = load_user_data(str(tmp_path / "free.npz"), layout=ImageLayout(), val_fraction=0.3, seed=0)
    assert not free.labelled and (len(free.train), len(free.val)) == (7, 3)


def test_a_function_returning_a_dataset_of_samples(tmp_path):
    (tmp_path / "mydata.py").write_text(
        "import torch\n"
        "from torch.utils.data import TensorDataset\n"
        "def samples():\n"
        "    return TensorDataset(torch.rand(20, 2, 3), torch.arange(20) % 2)\n"
        "def unlabelled():\n"
        "    return [torch.rand(5) for _ in range(10)]\n")
    data = load_user_data(f"{tmp_path / 'mydata.py'}:samples", layout=ImageLayout(), val_fraction=0.25, seed=0)
    assert data.train.inputs.shape == (15, 2, 3) and data.labelled
    free = load_user_data(f"{tmp_path / 'mydata.py'}:unlabelled", layout=ImageLayout(), val_fraction=0.2, seed=0)
    assert not free.labelled and free.train.inputs.shape == (8, 5)


def test_batches_of_a_dataloader_become_arrays():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.rand(10, 3), torch.arange(10)), batch_size=4)
    arrays = batches_to_arrays(loader, "train")
    assert arrays.inputs.shape == (10, 3) and arrays.labels.tolist() == list(range(10))


@pytest.mark.parametrize("make, problem", [
    (lambda p: p / "missing", "data not found or not readable"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no class folders"),
    (lambda p: np.savez(p / "bad.npz", z=np.ones(3)) or p / "bad.npz", "no 'x' array"),
    (lambda p: np.savez(p / "lab.npz", x=np.ones((4, 2)), y=np.ones(3)) or p / "lab.npz", "labels must be 4 integers"),
])
def test_bad_data_is_one_line(tmp_path, make, problem):
    with pytest.raises(UserDataError) as info:
        load_user_data(str(make(tmp_path)), layout=ImageLayout(), val_fraction=0.2, seed=0)
    message = str(info.value)
    assert problem in message and "\n" not in message, message
