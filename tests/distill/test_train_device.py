"""Training's device and precision: the choice (``--device``, ``--train-precision``, ``auto``), losses that stay
float32 and finite under bf16 autocast, training code that makes its tensors on its inputs' device, a user recipe
really trained under bf16 autocast on this CPU, and the report line that records how a run trained.

No GPU is assumed. Device-following code is checked with PyTorch's default device set to ``meta`` while the
inputs are CPU tensors: a tensor made "on the default device" instead of on its input's device then meets the
inputs on another device and fails, as it would on a GPU (where the default device is the CPU)."""
from __future__ import annotations

import dataclasses
import json
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from compressor.core.machine import cpu_flags
from compressor.distill.config import ConfigError
from compressor.distill.losses.precision import autocast_off, float32_loss, widen
from compressor.distill.train_runtime import (
    CPU_BF16_FLAGS,
    resolve_device,
    resolve_precision,
)
from compressor.models import create_model
from tests.distill.test_report import report  # noqa: F401  (the fixture: a report from fixed numbers)
from tests.distill.tiny_project import write_tiny_project
from tests.support import assert_one_line_error

BF16_CPU = any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)
needs_bf16_cpu = pytest.mark.skipif(not BF16_CPU, reason=f"this CPU reports none of {', '.join(CPU_BF16_FLAGS)} "
                                                         f"(bf16 autocast training is refused here)")
CPU = torch.device("cpu")


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def on_meta_default(fn, *args, **kwargs):
    """``fn(*args)`` with the default device set to ``meta`` (the inputs stay on the CPU)."""
    with torch.device("meta"):
        return fn(*args, **kwargs)


# ------------------------------------------------------------------ a user's tiny project

RECIPE = """
name: tiny-bf16
task: classification
teacher: {model: nets.py:teacher, train: {iterations: 30, lr: 0.01, batch: 32}}
student: {model: nets.py:student}
data: {source: data.npz}
distill:
  losses: [{name: hinton, weight: 0.5}, {name: ce, weight: 0.5}]
  train: {iterations: 30, lr: 0.01, batch: 32}
deploy:
  targets: [{target: onnxruntime}]
  compare_count: 1
  profile_seconds: 0.05
  profile_iterations: 3
"""


@pytest.fixture
def user_project(tmp_path):
    """A user's tiny classification project: two MLPs, 200 labelled rows, a quick recipe."""
    write_tiny_project(tmp_path, rows=200)
    (tmp_path / "recipe.yaml").write_text(textwrap.dedent(RECIPE))
    return tmp_path


# ------------------------------------------------------------------ choosing device and precision
def test_auto_precision_follows_the_cpu_flags():
    assert resolve_precision("auto", CPU, frozenset({"avx512f", "avx512_bf16"})) == "bf16"
    assert resolve_precision("auto", CPU, frozenset({"amx_bf16"})) == "bf16"
    assert resolve_precision("auto", CPU, frozenset({"avx2", "avx512f"})) == "fp32"
    assert resolve_precision("fp32", CPU, frozenset()) == "fp32"
    assert resolve_precision("BF16", CPU, frozenset({"avx512_bf16"})) == "bf16"
    with pytest.raises(ConfigError, match="this CPU reports none of avx512_bf16, amx_bf16"):
        resolve_precision("bf16", CPU, frozenset({"avx2"}))
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        resolve_precision("fp16", CPU, frozenset({"avx512_bf16"}))
    with pytest.raises(ConfigError, match="expected one of fp32, bf16, fp16, auto"):
        resolve_precision("int8", CPU, frozenset())
    assert resolve_precision("auto", CPU) == ("bf16" if BF16_CPU else "fp32")  # this machine's own flags


def test_device_names_are_checked_before_the_hardware():
    assert resolve_device("cpu") == CPU and resolve_device(" CPU ") == CPU
    if not torch.cuda.is_available():
        assert resolve_device("auto") == CPU
    for name, problem in (("cuda:x", "expected cuda:N with N a GPU index"), ("cuda:", "expected cuda:N"),
                          ("cuda:-1", "a GPU index is 0 or more"), ("gpu", "expected cpu, cuda, cuda:N or auto"),
                          ("tpu:0", "expected cpu, cuda, cuda:N or auto")):
        with pytest.raises(ConfigError, match=problem):
            resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("args, problem", [
    (("--device", "cuda"), "--device cuda: this machine has no CUDA device"),
    (("--device", "cuda:1"), "--device cuda:1: this machine has no CUDA device"),
    (("--device", "cuda:x"), "--device cuda:x: expected cuda:N with N a GPU index"),
    (("--device", "npu"), "--device npu: expected cpu, cuda, cuda:N or auto"),
    (("--train-precision", "fp16"), "--train-precision fp16: mixed fp16 training needs a CUDA device"),
])
def test_a_device_or_precision_this_machine_lacks_is_one_line(cli, user_project, args, problem):
    result = cli("run", user_project / "recipe.yaml", "--quick", "--out", user_project / "out", *args)
    assert_one_line_error(result, problem)
    assert not (user_project / "out").exists()


@pytest.mark.skipif(BF16_CPU, reason="this CPU has bf16 units")
def test_bf16_on_a_cpu_without_bf16_units_is_one_line(cli, user_project):
    result = cli("run", user_project / "recipe.yaml", "--train-precision", "bf16", "--out", user_project / "o")
    assert_one_line_error(result, "--train-precision bf16: this CPU reports none of")


# ------------------------------------------------------------------ float32 losses under autocast
def test_widen_keeps_full_precision_objects_and_widens_16_bit_ones():
    from compressor.distill.losses.zoo.base import KDBatch

    full, half = torch.ones(3), torch.ones(3, dtype=torch.bfloat16)
    double = torch.ones(2, dtype=torch.float64)
    assert widen(full) is full and widen(double) is double
    args = (full, [full, double], {"a": full})
    assert widen(args) is args  # nothing to widen: the same objects, so fp32 training is unchanged bit for bit
    widened = widen((half, [full, half], {"a": half, "b": 3}))
    assert widened[0].dtype == torch.float32 and widened[1][0] is full and widened[1][1].dtype == torch.float32
    assert widened[2]["a"].dtype == torch.float32 and widened[2]["b"] == 3
    batch = KDBatch(student=half, teacher=full, student_features={"x": half}, step=4)
    wide = widen(batch)
    assert wide.student.dtype == torch.float32 and wide.teacher is full and wide.step == 4
    assert wide.student_features["x"].dtype == torch.float32 and batch.student is half
    assert widen(KDBatch(student=full)).student is full


def test_float32_loss_turns_autocast_off_inside_only():
    seen = []

    @float32_loss
    def loss(a, b):
        seen.append((torch.is_autocast_enabled("cpu"), a.dtype, (a @ b.T).dtype))
        return (a @ b.T).sum()

    x = torch.randn(4, 8)
    with bf16_autocast():
        assert (x @ x.T).dtype == torch.bfloat16
        assert loss(x.bfloat16(), x).dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")
        with autocast_off():
            assert not torch.is_autocast_enabled("cpu") and (x @ x.T).dtype == torch.float32
    assert seen == [(False, torch.float32, torch.float32)]


def _bf16_features(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).bfloat16()


def test_kd_and_affinity_losses_are_float32_and_close_to_full_precision_under_autocast():
    from compressor.distill.losses import SpatialAffinityLoss
    from compressor.distill.losses.kd import SoftTargetKLLoss

    student, teacher = _bf16_features(8, 10), _bf16_features(8, 10, seed=1)
    kd = SoftTargetKLLoss(4.0)
    reference = kd(student.float(), teacher.float())
    with bf16_autocast():
        value = kd(student, teacher)
    assert value.dtype == torch.float32 and value.item() == pytest.approx(reference.item(), rel=1e-6)
    s_map, t_map = _bf16_features(2, 8, 12, 12), _bf16_features(2, 16, 12, 12, seed=1)
    affinity = SpatialAffinityLoss(max_positions=64)
    reference = affinity([s_map.float()], [t_map.float()])
    with bf16_autocast():
        value = affinity([s_map], [t_map])
    assert value.dtype == torch.float32 and value.item() == pytest.approx(reference.item(), rel=1e-5)


def test_focal_loss_stays_finite_when_a_bf16_score_saturates():
    from compressor.distill.losses.tracking import (
        TrackingLoss,
        center_heatmap,
        focal_loss,
    )

    logits = torch.full((2, 1, 8, 8), -3.0)
    logits[0, 0, 3, 3] = 12.0  # a confident peak: sigmoid is 1 - 6e-6
    boxes = torch.tensor([[0.35, 0.35, 0.2, 0.2], [0.5, 0.5, 0.25, 0.25]])
    with bf16_autocast():
        score = torch.clamp(torch.sigmoid(nn.functional.conv2d(logits, torch.ones(1, 1, 1, 1))), 1e-4, 1 - 1e-4)
        assert score.dtype == torch.bfloat16 and score.max().item() == 1.0  # 1 - 1e-4 rounds to 1 in bf16
        value = focal_loss(score, center_heatmap(boxes, 8))
        total, parts, giou = TrackingLoss()((score, torch.full((2, 2, 8, 8), 0.2).bfloat16(),
                                             torch.zeros(2, 2, 8, 8).bfloat16()), boxes)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert total.dtype == torch.float32 and torch.isfinite(total) and all(np.isfinite(list(parts.values())))
    full = torch.clamp(torch.sigmoid(logits), 1e-4, 1 - 1e-4)
    assert focal_loss(full, center_heatmap(boxes, 8)).item() == pytest.approx(value.item(), rel=2e-2)


def test_generic_objective_sums_float32_terms_under_autocast():
    from compressor.distill.tasks.generic_losses import LossEntry, Objective

    torch.manual_seed(0)
    student, teacher = _Net(8).train(), _Net(16).eval()
    entries = (LossEntry("ce", 0.5), LossEntry("hinton"), LossEntry("dkd"), LossEntry("taid"),
               LossEntry("fitnets", layers=(("body", "body"),)))
    objective = Objective(entries, student, teacher, 10)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    with objective.hooked():
        objective.prepare(x, y)
        with bf16_autocast():
            batch = objective.batch(x, y)
            assert batch.student.dtype == torch.bfloat16  # the models ran in bf16
        objective.step = 0
        expected = {e.name: float(term(widen(batch)).detach())  # each term in float32 from the bf16 outputs
                    for e, term in zip(entries, objective.terms)}
        objective.terms[3].previous_loss.fill_(float("nan"))  # TAID's state, as before the reference call
        with bf16_autocast():
            total, parts = objective(x, y)
    assert total.dtype == torch.float32 and set(parts) == {e.name for e in entries}
    for name, value in parts.items():  # each term computed in float32 from the bf16 outputs, not in bf16
        assert value == pytest.approx(expected[name], rel=1e-6, abs=1e-7), name
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in student.parameters())


class _Net(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, width), nn.ReLU())
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.body(x))


# ------------------------------------------------------------------ tensors made on the inputs' device
def test_sr_distillation_makes_its_tensors_on_the_inputs_device():
    from compressor.distill.distillers import (
        AffinityKDWeights,
        FeatureAffinityDistiller,
    )
    from compressor.distill.losses import SpatialAffinityLoss

    teacher, student = create_model("span_28", upscale=4), create_model("span_tiny", upscale=4).train()
    lr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
    for reduction in ("pool", "sample"):
        distiller = FeatureAffinityDistiller(student, teacher, [("block_1", "block_1")], AffinityKDWeights(),
                                             SpatialAffinityLoss(max_positions=16, reduction=reduction))
        loss, parts = on_meta_default(distiller, lr, hr)
        assert loss.device == CPU and np.isfinite(parts["aff"])


def test_tracking_objective_and_afkd_make_their_tensors_on_the_inputs_device():
    from compressor.distill.distillers.afkd import AFKDDistiller, AFKDLoss
    from compressor.distill.losses.tracking import TrackingLossWeights
    from compressor.distill.tasks.tracking_train import make_objective

    torch.manual_seed(0)
    student, teacher = create_model("ortrack_d_cpu").train(), create_model("ortrack_d_cpu").eval()
    objective = make_objective(student, TrackingLossWeights(), orr=True, orr_weight=0.1, ratio=0.3, block=16,
                               stop_gradient="masked", seed=0)
    z = torch.rand(2, 3, student.template_size, student.template_size)
    x = torch.rand(2, 3, student.search_size, student.search_size)
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.4, 0.4, 0.1, 0.2]])
    loss, parts = on_meta_default(objective, student, z, x, boxes)
    assert loss.device == CPU and "orr" in parts
    distiller = AFKDDistiller(student, teacher, objective, [("backbone.norm", "backbone.norm")], AFKDLoss())
    loss, parts = on_meta_default(distiller, z, x, boxes)
    assert loss.device == CPU and {"afkd", "orr"} <= set(parts)
    masks = objective.masking.sample(3, torch.Generator().manual_seed(1))
    assert masks.device == CPU  # drawn on the CPU generator whatever trains; moved to the images' device


def test_ids_and_text_steps_make_their_tensors_on_the_inputs_device():
    from compressor.distill.distillers.logit_kd import (
        LogitKDistiller,
        LogitKDWeights,
        teacher_outputs,
    )
    from compressor.distill.tasks.text_embedding import _relation_loss, _simcse_loss

    model = create_model("lsfidm_bilstm").train()
    tokens, labels = torch.randint(0, 100, (4, 20)), torch.randint(0, 4, (4,))
    logits, _ = teacher_outputs(model, [tokens.numpy()])
    distiller = LogitKDistiller(model, LogitKDWeights(1.0, 0.5))
    loss, parts = on_meta_default(distiller, tokens, labels, torch.from_numpy(logits))
    assert loss.device == CPU and set(parts) == {"ce", "kd", "feature"}
    first, second = torch.randn(4, 8), torch.randn(4, 8)
    loss, parts = on_meta_default(_simcse_loss, first, second, 0.05)
    assert loss.device == CPU and np.isfinite(parts["contrastive"])
    assert on_meta_default(_relation_loss, first, second).device == CPU


# ------------------------------------------------------------------ a user recipe trained in bf16
@needs_bf16_cpu
def test_a_user_recipe_trains_under_bf16_autocast_and_exports_float32(cli, user_project):
    tmp_path = user_project
    seen: list[tuple[torch.dtype, bool, bool]] = []

    def linear_outputs(module, inputs, output):
        if isinstance(module, nn.Linear) and isinstance(output, torch.Tensor):
            seen.append((output.dtype, module.training, torch.is_grad_enabled()))

    handle = nn.modules.module.register_module_forward_hook(linear_outputs)
    try:
        result = cli("run", tmp_path / "recipe.yaml", "--quick", "--train-precision", "bf16",
                     "--out", tmp_path / "out")
    finally:
        handle.remove()
    assert result.code == 0, result.err
    training = {dtype for dtype, train_mode, grad in seen if train_mode and grad}
    assert training == {torch.bfloat16}  # every Linear of every training step ran in bf16
    assert torch.float32 in {dtype for dtype, train_mode, _ in seen if not train_mode}  # export, evaluation
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    for role in ("teacher", "student", "baseline"):
        setup = written["models"][role]["training"]["setup"]
        assert setup["device"] == "cpu" and setup["precision"] == "bf16" and setup["processes"] == 1
    state = torch.load(tmp_path / "out" / "checkpoints" / "student.pt", weights_only=True)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
    (student,) = [a for a in written["artifacts"] if a["role"] == "student"]
    assert student["parity"]["passed"] and student["precision"] == "fp32"
    assert "- training: cpu, bf16 autocast, 1 process\n" in (tmp_path / "out" / "report.md").read_text()
    assert "Training: cpu, bf16 autocast, 1 process." in (tmp_path / "out" / "report.html").read_text()


# ------------------------------------------------------------------ the report line
def test_the_report_says_how_each_run_trained(report):  # noqa: F811
    from compressor.distill.report.html import training_section
    from compressor.distill.report.render import summary_lines, training_setup

    setup = {"device": "cuda:0", "precision": "bf16", "processes": 2, "backend": "nccl", "resume": True,
             "reuse": True}
    curve = {"iterations": 120, "loss_curve": [1.0, 0.5, 0.2], "setup": setup}
    models = tuple(dataclasses.replace(m, training={**curve, **extra}) for m, extra in zip(report.models, (
        {"reused": True}, {"resumed_at": 40}, {})))
    trained = dataclasses.replace(report, models=models)
    line = training_setup(trained.models)
    assert line == ("cuda:0, bf16 autocast, 2 processes (nccl); reused from an earlier run: teacher; "
                    "student resumed at iteration 40 of 120")
    assert f"- training: {line}" in summary_lines(trained)
    assert f"Training: {line}." in training_section(trained).body
    single = {"device": "cpu", "precision": "fp32", "processes": 1, "backend": "gloo"}
    plain = tuple(dataclasses.replace(m, training={**curve, "setup": single}) for m in report.models)
    assert training_setup(plain) == "cpu, fp32, 1 process"
    assert training_setup(report.models) == ""  # trained before the setup was recorded: no line
    assert not any(line.startswith("- training") for line in summary_lines(report))
