"""Checkpoints load through ``create_model(name, weights=...)`` for every model: strictly, without unpickling."""
from __future__ import annotations

import pytest
import torch

from compressor.core.errors import ModelSpecError
from compressor.models import create_model


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_factory_without_weights_argument_gets_them_loaded(tmp_path):
    torch.manual_seed(1)
    trained = create_model("lsfidm_bilstm", seq_len=7)
    torch.save(trained.state_dict(), tmp_path / "student.pt")
    torch.manual_seed(2)
    loaded = create_model("lsfidm_bilstm", weights=tmp_path / "student.pt", seq_len=7)
    assert _same(trained, loaded)


def test_safetensors_checkpoints_load(tmp_path):
    from safetensors.torch import save_file

    trained = create_model("tiny_token_bilstm", seed=3)
    save_file(trained.state_dict(), str(tmp_path / "model.safetensors"))
    assert _same(trained, create_model("tiny_token_bilstm", weights=tmp_path / "model.safetensors"))


def test_pickled_objects_are_refused_and_mismatches_named(tmp_path):
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")
    with pytest.raises(ModelSpecError, match="cannot read weights .*pickled object, not a state dict"):
        create_model("lsfidm_bilstm", weights=tmp_path / "pickled.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelSpecError, match="cannot read weights") as garbage:
        create_model("lsfidm_bilstm", weights=tmp_path / "garbage.pt")
    assert "pickled object" not in str(garbage.value)
    torch.save(create_model("lsfidm_bilstm", seq_len=7).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ModelSpecError, match="do not fit model 'can_bert_tiny'"):
        create_model("can_bert_tiny", weights=tmp_path / "other.pt")
    with pytest.raises(ModelSpecError, match="weights file not found"):
        create_model("lsfidm_bilstm", weights=tmp_path / "missing.pt")


# ---------------------------------------------------------------- truncated and corrupt checkpoints
@pytest.mark.parametrize("damage, needle", [
    (lambda b: b[: len(b) // 2], "truncated or corrupt"),
    (lambda b: b[:-1], "truncated or corrupt"),
    (lambda b: b[:10], "truncated or corrupt"),
    (lambda b: b"", "the file is empty"),
    (lambda b: b"\x00garbage" * 50, "not a PyTorch checkpoint"),
])
def test_a_damaged_checkpoint_is_one_line_naming_it_without_unsafe_advice(tmp_path, damage, needle):
    from compressor.models._weights import check_checkpoint, read_state_dict

    good = tmp_path / "good.pth"
    torch.save({"w": torch.zeros(64, 64)}, good)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(ModelSpecError) as caught:
        check_checkpoint(bad)
        read_state_dict(bad)
    text = str(caught.value)
    assert needle in text and "bad.pth" in text and "\n" not in text
    assert "weights_only" not in text and "Errno" not in text


def test_a_truncated_legacy_or_safetensors_checkpoint_is_one_line(tmp_path):
    from safetensors.torch import save_file

    from compressor.models._weights import read_state_dict

    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(8)}, legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:-5])
    with pytest.raises(ModelSpecError, match="legacy.pth: truncated or corrupt file"):
        read_state_dict(legacy)
    tensors = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(tensors))
    tensors.write_bytes(tensors.read_bytes()[:-100])
    with pytest.raises(ModelSpecError, match="w.safetensors: truncated"):
        read_state_dict(tensors)
