"""The INT8 stage on a tiny model: QAT once per role, the gate from the QAT export with its trained ranges,
and the fallback to the FP32 export when the QAT model misses the budget."""
import pytest

from compressor.distill.int8.record import Int8Record
from compressor.distill.int8.schemes import QDQ
from compressor.distill.int8.stage import Int8Stage
from compressor.distill.recipe import DeployConfig, TargetChoice
from compressor.targets.onnx import export_onnx

from .tiny_task import fidelity_task

GATE_KEYS = {"reference_metric", "budget", "passed", "kept_in_float", "tries", "calibration_samples", "method",
             "quantizer", "float_layers", "qat"}
QAT_KEYS = {"iterations", "lr", "samples", "seconds", "layers", "relative_l1_to_fp32_before",
            "relative_l1_to_fp32_after", "final_loss", "scheme", "used", "trained_ranges"}
ORT_INT8 = TargetChoice("onnxruntime", "int8")


def _run(folder, deploy: DeployConfig):
    """The stage's INT8 engine of the tiny student for ONNX Runtime, what it announced, and the stage."""
    task = fidelity_task(folder, seed=3)
    student = task.train()["student"]
    onnx = export_onnx(student.model, task.input_specs(), student.output_names, folder / "onnx" / "student.onnx")
    said: list[str] = []
    stage = Int8Stage(task, deploy, onnx_dir=folder / "onnx", engine_dir=folder / "engines", seed=3,
                      announce=said.append, source="tiny")
    return stage.build("student", onnx, student, ORT_INT8), said, stage, onnx, student


@pytest.fixture(scope="module")
def fallback(tmp_path_factory):
    """QAT at a step size that wrecks the model: its INT8 cannot meet a budget the FP32 export's INT8 meets."""
    deploy = DeployConfig(int8_budget=0.02, calibration_samples=8, qat_iterations=5, qat_lr=0.5,
                          qat_float_anchor=0.0)
    return _run(tmp_path_factory.mktemp("fallback"), deploy)


def test_a_qat_model_missing_the_budget_falls_back_to_the_fp32_export(fallback):
    built, said, _, _, _ = fallback
    record = built.record
    assert isinstance(record, Int8Record) and record.passed and record.quantizer == "qdq"
    assert record.qat is not None and not record.qat.used and not record.qat.trained_ranges
    assert record.qat_iterations == 0  # the engine is the FP32 export's
    assert record.qat.iterations == 5 and record.qat.scheme == "qdq"
    assert record.qat.relative_l1_after > 10 * record.qat.relative_l1_before  # QAT moved the weights far
    assert built.artifact.path.name == "student_onnxruntime_int8.onnx"
    assert said == ["quantization-aware fine-tuning of student (5 iterations, distilled from its FP32 self)",
                    "calibrate and quantize student for onnxruntime int8 (accuracy gate: fidelity drop <= 0.02)",
                    "the QAT model misses the budget on onnxruntime: gate the FP32 export instead"]


def test_the_record_writes_todays_gate_keys(fallback):
    gate = fallback[0].record.to_dict()
    assert set(gate) == GATE_KEYS and set(gate["qat"]) == QAT_KEYS
    assert gate["qat"]["used"] is False and gate["tries"][0]["kept_in_float"] == []


def test_qat_runs_once_per_role(fallback):
    _, said, stage, onnx, student = fallback
    first = stage.finetune("student", onnx, student)
    assert stage.finetune("student", onnx, student) is first and len(said) == 3
    assert first.scheme is QDQ and first.artifact.path.name == "student_qat.onnx"
    assert first.artifact.source == "tiny:student_qat"


def test_a_qat_model_within_budget_is_quantized_with_the_ranges_it_trained_for(tmp_path):
    deploy = DeployConfig(int8_budget=0.02, calibration_samples=8, qat_iterations=20, qat_lr=1e-3)
    built, said, _, _, _ = _run(tmp_path, deploy)
    assert built.record.passed and built.record.qat.used and built.record.qat.trained_ranges
    assert built.record.qat_iterations == 20 and len(said) == 2
    assert built.artifact.metadata["int8"]["ranges_from"] == str(tmp_path / "onnx" / "student.onnx")
    assert built.artifact.metadata["int8"]["bias_correction"] is False
