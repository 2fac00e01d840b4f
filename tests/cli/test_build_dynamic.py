"""``compress build --quantizer dynamic``: ONNX Runtime INT8 without calibration data, then compared."""
from __future__ import annotations

import json

from tests.support import assert_one_line_error


def test_dynamic_int8_builds_without_calibration_and_passes_compare(cli, exported, tmp_path):
    source = exported["tiny_pair_transformer"].path
    built = cli("build", str(source), "--target", "onnxruntime", "--precision", "int8", "--quantizer", "dynamic",
                "--out", str(tmp_path), "--json")
    assert built.code == 0, built.err
    artifact = json.loads(built.out)
    assert artifact["metadata"]["int8"]["quantizer"] == "dynamic"
    compared = cli("compare", str(source), artifact["path"], "--json")
    assert compared.code == 0, compared.err
    assert json.loads(compared.out)["tolerance"]["stat"] == "sqnr"
    assert_one_line_error(cli("build", str(source), "--target", "onnxruntime", "--precision", "int8",
                              "--out", str(tmp_path)), "needs calibration data")
    assert_one_line_error(cli("build", str(source), "--target", "onnxruntime", "--precision", "fp16",
                              "--quantizer", "dynamic", "--out", str(tmp_path)), "int8 artifacts only")
