"""LSF-IDM models: forward, backward, declared int64 inputs, sizes (export: tests/models/test_every_model.py)."""
from __future__ import annotations

import pytest
import torch

from compressor.core.tensor_spec import TensorSpec
from compressor.models import create_model, list_models
from compressor.models.can_ids import LsfIdmBiLSTM
from compressor.models.complexity import count_macs, count_params, lstm_macs

CAN_MODELS = ["can_bert_tiny", "lsfidm_bilstm"]


@pytest.mark.parametrize("name", CAN_MODELS)
def test_forward_backward_and_declared_inputs(name):
    torch.manual_seed(0)
    model = create_model(name, seq_len=13)
    spec = TensorSpec.parse(model.input_specs[0])
    assert spec.dtype == "int64" and spec.shape == ("N", 13) and model.output_names == ["logits"]
    tokens = torch.randint(0, int(spec.high), (3, 13))
    logits = model.train()(tokens)
    assert logits.shape == (3, 5)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_registry_lists_the_family_and_sizes():
    assert {"can_bert_tiny", "can_bert_mini", "can_bert_small", "can_bert_medium", "can_bert_base",
            "lsfidm_bilstm"} <= set(list_models())
    student = create_model("lsfidm_bilstm")
    assert isinstance(student, LsfIdmBiLSTM) and student.lstm.hidden_size == 64 and student.lstm.num_layers == 2
    assert student.lstm.bidirectional and 100_000 < count_params(student) < 300_000
    assert count_params(create_model("can_bert_mini")) > 10 * count_params(student)


def test_lstm_macs_are_counted():
    student = create_model("lsfidm_bilstm", seq_len=13)
    per_step = 2 * 4 * 64 * (32 + 64) + 2 * 4 * 64 * (128 + 64)  # two directions, two layers
    assert lstm_macs(student.lstm, (1, 13, 32)) == 13 * per_step
    assert count_macs(student, [TensorSpec.parse("tokens:1x13:int64:0..2328")]) == 13 * per_step + 128 * 5
