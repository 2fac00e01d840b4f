"""ViT tracker: preset sizes, outputs, and export parity in ONNX Runtime and OpenVINO at batch 1 and 2."""
import numpy as np
import pytest
import torch

from compressor.models import create_model, list_models
from compressor.models.complexity import count_params

PRESETS = ["ortrack_cpu", "ortrack_d", "ortrack_d_cpu", "ortrack_deit_tiny"]


def test_presets_are_registered():
    assert list_models("ortrack*") == PRESETS


@pytest.mark.parametrize("name, expected", [("ortrack_deit_tiny", 8.04e6), ("ortrack_d", 5.37e6)])
def test_full_preset_parameter_counts(name, expected):
    model = create_model(name)
    assert abs(count_params(model) - expected) / expected < 0.01
    backbone = count_params(model.backbone)
    assert abs(count_params(model.box_head) - 2.49e6) / 2.49e6 < 0.01
    assert (model.template_size, model.search_size, model.grid) == (128, 256, 16)
    assert model.backbone.pos_embed_z.shape == (1, 64, 192) and model.backbone.pos_embed_x.shape == (1, 256, 192)
    assert backbone == pytest.approx(5.55e6 if name == "ortrack_deit_tiny" else 2.88e6, rel=0.01)


def test_outputs_shapes_ranges_and_zero_position_embeddings():
    model = create_model("ortrack_d_cpu").eval()
    assert torch.all(model.backbone.pos_embed_z == 0) and torch.all(model.backbone.pos_embed_x == 0)
    with torch.no_grad():
        score, size, offset = model(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 128, 128))
        tokens = model.backbone(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 128, 128))
    assert score.shape == (2, 1, 8, 8) and size.shape == (2, 2, 8, 8) and offset.shape == (2, 2, 8, 8)
    assert score.min() >= 1e-4 and score.max() <= 1 - 1e-4 and 0 <= size.min() and size.max() <= 1
    assert tokens.shape == (2, 16 + 64, 128)  # template tokens first, no CLS


def test_explicit_attention_matches_fused():
    model = create_model("ortrack_d_cpu").eval()
    z, x = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        fused = model(z, x)
        explicit = model.set_exportable(True)(z, x)
    for a, b in zip(fused, explicit):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_backward_reaches_every_parameter():
    model = create_model("ortrack_d_cpu").train()
    score, size, offset = model(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 128, 128))
    (score.mean() + size.mean() + offset.mean()).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.fixture(scope="module")
def exported_tracker(tmp_path_factory):
    from compressor.core.tensor_spec import parse_specs
    from compressor.targets.onnx import ExportOptions, export_onnx

    torch.manual_seed(0)
    model = create_model("ortrack_d_cpu").set_exportable(True).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, as a trained head has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp("tracker")
    artifact = export_onnx(model, parse_specs(model.input_specs), model.output_names, folder / "tracker.onnx",
                           ExportOptions(source="ortrack_d_cpu"))
    return model, artifact, folder


def test_export_has_two_inputs_three_outputs(exported_tracker):
    _, artifact, _ = exported_tracker
    assert [s.name for s in artifact.inputs] == ["template", "search"]
    assert [s.name for s in artifact.outputs] == ["score_map", "size_map", "offset_map"]
    assert artifact.inputs[0].shape[0] == "N"


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_engines_match_pytorch_at_batch_1_and_2(exported_tracker, target):
    from compressor.core.feeds import random_feeds
    from compressor.targets.compare import Tolerance, compare_runners
    from compressor.targets.table import load_target, open_runner
    from compressor.targets.torch_runner import TorchRunner

    model, artifact, folder = exported_tracker
    built = load_target(target).build(artifact.path, precision="fp32", out_dir=folder, name=f"tracker_{target}")
    feeds = random_feeds(built.inputs, count=2, batches=(1, 2), seed=3)
    with TorchRunner(model, built.inputs, model.output_names) as ref, open_runner(built) as engine:
        report = compare_runners(ref, engine, feeds, Tolerance.for_precision("fp32"))
    assert report.passed, report.to_dict()
    assert report.max_abs < 1e-3 and {f["template"].shape[0] for f in feeds} == {1, 2}
    np.testing.assert_array_equal(sorted({f["search"].shape[0] for f in feeds}), [1, 2])
