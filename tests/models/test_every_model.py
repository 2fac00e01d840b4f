"""Every registered model, as timm tests its zoo: built by name, run on random inputs drawn from the input specs
it declares (outputs finite and as many as its declared output names), and exported to ONNX by
``compressor.targets.onnx.export_onnx``, which runs the ONNX file in ONNX Runtime and compares it with PyTorch.

Export uses the TorchScript exporter (the pipeline's fallback; the dynamo default is exercised on the tiny
models by the session's ``exported`` fixture) and verifies at batch 1 and 2, to keep the file quick."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compressor.core.feeds import random_feed
from compressor.models import list_models
from compressor.models.spec import LoadedModel, load_model_spec, resolve_input_specs
from compressor.targets.onnx import ExportOptions, export_onnx
from compressor.targets.torch_runner import outputs_to_dict

HEAVY = {  # exports marked slow (-m "not slow" leaves them out); their forward runs in every run
    "can_bert_base": "88M parameters: its ONNX export and verification take 15-40 s on 2 cores, half the file",
}


def _marked(names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.slow(reason=HEAVY[n])) if n in HEAVY else n for n in names]


def _load(name: str) -> LoadedModel:
    torch.manual_seed(0)
    loaded = load_model_spec(name)
    assert loaded.input_specs, f"{name} declares no input_specs"
    assert loaded.output_names, f"{name} declares no output_names"
    return loaded


def test_the_registry_is_not_empty_and_heavy_models_exist():
    names = list_models()
    assert len(names) >= 10 and set(HEAVY) <= set(names)


@pytest.mark.parametrize("name", list_models())
def test_forward_on_declared_inputs(name):
    loaded = _load(name)
    specs = resolve_input_specs(loaded, [])
    feed = random_feed(specs, batch=2, rng=np.random.default_rng(0))
    with torch.inference_mode():
        outputs = loaded.model.eval()(*(torch.from_numpy(feed[s.name]) for s in specs))
    named = outputs_to_dict(outputs, loaded.output_names)  # raises when the count differs from the names
    assert list(named) == loaded.output_names
    for output, value in named.items():
        assert value.shape[0] == 2, f"{name}.{output} lost the batch axis: {value.shape}"
        assert np.isfinite(value).all(), f"{name}.{output} is not finite"


@pytest.mark.parametrize("name", _marked(list_models()))
def test_exports_to_onnx_that_matches_pytorch(name, tmp_path):
    loaded = _load(name)
    if hasattr(loaded.model, "set_exportable"):
        loaded.model.set_exportable(True)
    specs = resolve_input_specs(loaded, [])
    options = ExportOptions(exporter="torchscript", verify_batches=(1, 2), source=name)
    artifact = export_onnx(loaded.model, specs, loaded.output_names, tmp_path / f"{name}.onnx", options)
    assert [s.name for s in artifact.inputs] == [s.name for s in specs]
    assert [s.name for s in artifact.outputs] == loaded.output_names
