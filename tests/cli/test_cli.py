"""The compress CLI end to end, for three model kinds, and bad input for every command."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.support import MODEL_KINDS, assert_one_line_error

COMMANDS = ["list", "export", "build", "compare", "profile", "bundle", "bundle verify"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli, command):
    result = cli(*command.split(), "--help")
    assert result.code == 0 and "Usage:" in result.out and len(result.out.splitlines()) > 3


def test_help_imports_no_runtime():
    code = ("import sys; from compressor.cli import main; main(['--help']); "
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'openvino') if m in sys.modules]; "
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "HEAVY []" in out


def test_list_json(cli):
    data = json.loads(cli("list", "--json").out)
    assert {t["name"] for t in data["targets"]} >= {"onnxruntime", "openvino"}
    assert set(MODEL_KINDS) <= set(data["models"])


@pytest.mark.parametrize("name", MODEL_KINDS)
def test_export_build_compare_profile_bundle_verify(cli, tmp_path, name):
    out = tmp_path / "build"
    result = cli("export", name, "--out", out, "--json")
    assert result.code == 0, result.err
    onnx_path = json.loads(result.out)["path"]
    for target, precision, suffix in [("onnxruntime", "fp32", "onnx"), ("openvino", "fp32", "xml"),
                                      ("openvino", "fp16", "xml")]:
        built = cli("build", onnx_path, "--target", target, "--precision", precision, "--out", out,
                    "--name", f"{name}_{target}_{precision}")
        assert built.code == 0, built.err
        artifact = out / f"{name}_{target}_{precision}.{suffix}"
        compared = cli("compare", name, artifact, "--batch", "1,2,3", "--count", "2", "--json")
        assert compared.code == 0, compared.out
        report = json.loads(compared.out)
        assert report["passed"] and report["feeds"] == 6
    compared = cli("compare", onnx_path, out / f"{name}_openvino_fp32.xml")  # ONNX reference
    assert compared.code == 0 and compared.out.startswith("PASS")
    sidecar = out / f"{name}_openvino_fp32.xml.artifact.json"
    profiled = cli("profile", sidecar, "--json", "--batch", "2", "--duration", "0.2", "--iterations", "10",
                   "--warmup", "0.05")
    assert profiled.code == 0, profiled.err
    stats = json.loads(profiled.out)
    assert set(stats["latency_ms"]) == {"min", "median", "mean", "p90", "p95", "p99", "max", "std"}
    assert stats["protocol"]["batch"] == 2 and stats["throughput_fps"] > 0 and "cov" in stats
    bundled = cli("bundle", out / f"{name}_onnxruntime_fp32.onnx", "--out", tmp_path / "dist", "--duration", "0.1",
                  "--json")
    assert bundled.code == 0, bundled.err
    verified = cli("bundle", "verify", json.loads(bundled.out)["archive"])
    assert verified.code == 0 and "self-test passed" in verified.out, verified.err


def test_compare_fails_with_exit_1_when_outputs_differ(cli, exported, tmp_path):
    cli("build", exported["tiny_convnet"].path, "--target", "onnxruntime", "--out", tmp_path)
    result = cli("compare", "tiny_convnet", tmp_path / "tiny_convnet_fp32.onnx", "--arg", "seed=7")
    assert result.code == 1 and result.out.startswith("FAIL")


def test_compare_with_user_npz(cli, exported, tmp_path):
    art = exported["tiny_pair_transformer"]
    feeds = tmp_path / "in.npz"
    np.savez(feeds, template=np.random.rand(3, 1, 3, 32, 32).astype(np.float32),
             search=np.random.rand(3, 1, 3, 64, 64).astype(np.float32))
    result = cli("compare", "tiny_pair_transformer", art.path, "--inputs", feeds, "--json")
    assert result.code == 0 and json.loads(result.out)["feeds"] == 3


# ---------------------------------------------------------------- bad input, every command
@pytest.fixture
def files(tmp_path, exported):
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("hello, I am not a model\n")
    truncated = tmp_path / "cut.onnx"
    data = exported["tiny_convnet"].path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    return {"not_onnx": not_onnx, "truncated": truncated, "unwritable": blocker / "out",
            "onnx": exported["tiny_convnet"].path, "pair": exported["tiny_pair_transformer"].path}


def test_export_bad_input(cli, files, tmp_path):
    assert_one_line_error(cli("export", "missing/model.py:build", "--out", tmp_path), "does not exist")
    assert_one_line_error(cli("export", "tiny_convnett", "--out", tmp_path), "did you mean 'tiny_convnet'")
    assert_one_line_error(cli("export", "tiny_convnet", "--input", "image:1x3xQ", "--out", tmp_path),
                          "needs an example size")
    assert_one_line_error(cli("export", "tiny_convnet", "--out", files["unwritable"]), "output folder")


def test_build_bad_input(cli, files, tmp_path):
    assert_one_line_error(cli("build", tmp_path / "nope.onnx", "--target", "onnxruntime", "--out", tmp_path),
                          "does not exist")
    assert_one_line_error(cli("build", files["not_onnx"], "--target", "openvino", "--out", tmp_path),
                          "not an ONNX model")
    assert_one_line_error(cli("build", files["truncated"], "--target", "openvino", "--out", tmp_path), "ONNX")
    assert_one_line_error(cli("build", files["onnx"], "--target", "openvinoo", "--out", tmp_path),
                          "did you mean 'openvino'")
    assert_one_line_error(cli("build", files["onnx"], "--target", "openvino", "--precision", "int3", "--out",
                              tmp_path), "does not support precision 'int3'")
    assert_one_line_error(cli("build", files["onnx"], "--target", "openvino", "--out", files["unwritable"]),
                          "output folder")
    assert not list(tmp_path.glob("*.xml")) and not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("args, problem", [
    # the flags are spellings of target options: the target's options class judges them
    (["--target", "onnxruntime", "--static-shapes"],
     "option 'static_shapes' does not apply to target onnxruntime (its options: provider, quantizer)"),
    (["--target", "onnxruntime", "--float-layers", "bf16"],
     "option 'float_layers' does not apply to target onnxruntime"),
    (["--target", "onnxruntime", "--quantizer", "nncf"],
     "option 'quantizer' of target onnxruntime: 'nncf' is not one of qdq, dynamic"),
    (["--target", "openvino", "--provider", "cuda"],
     "option 'provider' does not apply to target openvino (its options: quantizer, static_shapes, float_layers)"),
    (["--target", "openvino", "--quantizer", "nncff"],
     "option 'quantizer' of target openvino: 'nncff' is not one of qdq, nncf (did you mean 'nncf'?)"),
    (["--target", "openvino", "--float-layers", "bf16"],
     "option 'float_layers' of target openvino: bf16 applies to int8 artifacts only, not fp32"),
    # --option KEY=VALUE: unknown key, wrong type, bad choice, another target's key, malformed, given twice
    (["--target", "openvino", "--option", "static_shape=true"],
     "option 'static_shape' does not apply to target openvino (did you mean 'static_shapes'?)"),
    (["--target", "openvino", "--option", "static_shapes=maybe"],
     "option 'static_shapes' of target openvino: expected a boolean (true or false), got 'maybe'"),
    (["--target", "openvino", "--option", "float_layers=int4"], "'int4' is not one of fp32, bf16"),
    (["--target", "onnxruntime", "--option", "max_batch=8"], "option 'max_batch' does not apply to target onnxruntime"),
    (["--target", "openvino", "--option", "static_shapes"], "--option takes KEY=VALUE, got 'static_shapes'"),
    (["--target", "openvino", "--static-shapes", "--option", "static_shapes=false"],
     "option 'static_shapes' is given twice"),
])
def test_build_options_are_validated_by_the_target(cli, files, tmp_path, args, problem):
    assert_one_line_error(cli("build", files["onnx"], *args, "--out", tmp_path / "out"), problem)
    assert not (tmp_path / "out").exists()  # judged before anything is written


def test_build_generic_option_and_its_flag_spelling_agree(cli, exported, tmp_path):
    sidecars = []
    for spelling in (["--provider", "cpu"], ["--option", "provider=cpu"]):
        built = cli("build", exported["tiny_convnet"].path, "--target", "onnxruntime", "--out", tmp_path, "--json",
                    "--name", spelling[0].strip("-"), *spelling)
        assert built.code == 0, built.err
        sidecars.append(json.loads(built.out)["options"])
    assert sidecars == [{"provider": "cpu"}] * 2


def test_build_static_shapes_compares_at_several_batches(cli, exported, tmp_path):
    built = cli("build", exported["tiny_convnet"].path, "--target", "openvino", "--static-shapes", "--out", tmp_path,
                "--json")
    assert built.code == 0, built.err
    artifact = json.loads(built.out)
    assert artifact["options"]["static_shapes"] is True
    compared = cli("compare", "tiny_convnet", artifact["path"], "--batch", "1,2,3", "--json")
    assert compared.code == 0 and json.loads(compared.out)["passed"]


def test_compare_bad_input(cli, files, tmp_path, exported):
    assert_one_line_error(cli("compare", "tiny_convnet", tmp_path / "gone.xml"), "does not exist")
    assert_one_line_error(cli("compare", "tiny_convnet", files["not_onnx"]), "no sidecar")
    wrong_name = tmp_path / "wrong_name.npz"
    np.savez(wrong_name, picture=np.zeros((1, 3, 32, 32), np.float32))
    assert_one_line_error(cli("compare", "tiny_convnet", files["onnx"], "--inputs", wrong_name), "image")
    wrong_shape = tmp_path / "wrong_shape.npz"
    np.savez(wrong_shape, template=np.zeros((1, 3, 32, 32), np.float32), search=np.zeros((1, 3, 60, 64), np.float32))
    assert_one_line_error(cli("compare", "tiny_pair_transformer", files["pair"], "--inputs", wrong_shape),
                          "input 'search' is Nx3x64x64")
    wrong_dtype = tmp_path / "wrong_dtype.npz"
    np.savez(wrong_dtype, tokens=np.zeros((1, 32), np.float32))
    assert_one_line_error(cli("compare", "tiny_token_bilstm", exported["tiny_token_bilstm"].path, "--inputs",
                              wrong_dtype), "dtype float32, expected int64")


def test_profile_bad_input(cli, files, tmp_path):
    assert_one_line_error(cli("profile", tmp_path / "gone.onnx"), "does not exist")
    assert_one_line_error(cli("profile", files["truncated"]), "no sidecar")
    broken = tmp_path / "m.onnx"
    broken.write_bytes(files["not_onnx"].read_bytes())
    (tmp_path / "m.onnx.artifact.json").write_text("{not json")
    assert_one_line_error(cli("profile", broken), "not a valid artifact")


def test_bundle_bad_input(cli, files, tmp_path):
    assert_one_line_error(cli("bundle", tmp_path / "gone.onnx", "--out", tmp_path), "does not exist")
    assert_one_line_error(cli("bundle", files["onnx"], "--out", files["unwritable"]), "output folder")
    assert_one_line_error(cli("bundle", "verify", tmp_path / "nothing.tar.gz"), "does not exist")
    evil = tmp_path / "evil.tar.gz"
    import io
    import tarfile

    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    assert_one_line_error(cli("bundle", "verify", evil), "unsafe path")


def test_unknown_command_suggests(cli):
    result = cli("exprt")
    assert result.code == 2 and "did you mean 'export'" in result.err


# ---------------------------------------------------------------- the top level: one line and an exit status for all
@pytest.mark.parametrize("args, needle", [
    (["profile", "m.onnx", "--threads", "0"], "Invalid value for '--threads'"),
    (["profile", "m.onnx", "--bogus"], "No such option '--bogus'"),
    (["profile"], "Missing argument 'ARTIFACT'"),
    (["build", "m.onnx", "--out", "x"], "Missing option '--target'"),
    (["profile", "m.onnx", "--duration", "nan"], "--duration': nan is not a finite number of seconds from 0 to 3600"),
    (["--no-such-flag"], "No such option"),
])
def test_usage_errors_are_one_line_pointing_at_help(cli, args, needle):
    result = cli(*args)
    assert_one_line_error(result, needle, "--help')")
    assert result.err.startswith("error: ")


@pytest.fixture
def raising(monkeypatch, tmp_path):
    """``compress raise FAILURE FOLDER``: a command failing with a real exception of the kind named."""
    from compressor.cli import COMMANDS

    monkeypatch.setitem(COMMANDS, "raise", ("tests.cli.raising_cmd", "raising", "Fail on purpose."))
    monkeypatch.delenv("COMPRESS_DEBUG", raising=False)
    return lambda cli, failure, *flags: cli(*flags, "raise", failure, tmp_path)


@pytest.mark.parametrize("failure, needles", [
    ("disk-full", ["error: no space left on device writing", "report.json"]),
    ("disk-full-wrapped", ["error: no space left on device"]),
    ("quota", ["error: disk quota exceeded writing", "model.onnx"]),
    ("memory", ["error: out of memory (Unable to allocate", "try a smaller batch"]),
    ("missing-file", ["no/such.file: No such file or directory"]),
    ("end-of-file", ["error: a file ended before its data did (No data left in file)"]),
    ("recursion", ["nested too deeply"]),
])
def test_machine_failures_are_one_line_exit_2(cli, raising, failure, needles):
    result = raising(cli, failure)
    assert_one_line_error(result, *needles)
    assert ".tmp" not in result.err  # the file the user will see, never the temporary name


def test_ctrl_c_is_one_line_exit_130(cli, raising):
    result = raising(cli, "interrupt")
    assert result.code == 130 and result.err == "interrupted\n"


def test_a_bug_is_one_line_exit_3_and_debug_shows_the_traceback(cli, raising, monkeypatch):
    result = raising(cli, "bug")
    assert result.code == 3 and len(result.err.splitlines()) == 1 and "Traceback" not in result.err
    assert result.err.startswith("error: internal error (a bug in edge-compress, please report it): "
                                 "KeyError: 'threads' at ")
    assert "raising_cmd.py:" in result.err and "compress --debug" in result.err
    with pytest.raises(KeyError, match="threads"):
        raising(cli, "bug", "--debug")
    monkeypatch.setenv("COMPRESS_DEBUG", "1")
    with pytest.raises(KeyError, match="threads"):
        raising(cli, "bug")
    monkeypatch.setenv("COMPRESS_DEBUG", "0")
    assert raising(cli, "bug").code == 3
    assert_one_line_error(raising(cli, "memory", "--debug"), "out of memory")  # debug is for bugs only


def test_help_documents_exit_status_and_debug(cli):
    text = " ".join(cli("--help").out.split())
    assert "--debug" in text and "COMPRESS_DEBUG=1" in text
    assert "2 bad input" in text and "3 an internal error" in text and "130 interrupted" in text
    profile_help = " ".join(cli("profile", "--help").out.split())
    assert "--threads INTEGER" in profile_help and "0.0<=x<=3600.0" in profile_help
