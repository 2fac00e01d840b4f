"""Profiling in a fresh process: the same statistics, the engine's own peak memory, and one-line failures."""
from __future__ import annotations

import json
import shutil

import pytest

from compressor.targets.base import Artifact
from compressor.targets.isolated_profile import (
    IsolatedProfileError,
    peak_rss_mb,
    profile_isolated,
    rss_mb,
)
from compressor.targets.profile import ProfileOptions
from tests.support import assert_one_line_error

QUICK = ProfileOptions(threads=1, warmup_s=0.0, min_iterations=10, min_duration_s=0.0, windows=2)


def test_isolated_profile_measures_in_a_fresh_process_with_its_memory(exported):
    import os

    artifact = exported["tiny_convnet"]
    result = profile_isolated(artifact, QUICK, shapes={"image": (1, 3, 40, 40)})
    assert result["isolated"] is True and result["target"] == "onnx" and result["iterations"] == 10
    assert result["protocol"]["input_shapes"][0]["shape"] == [1, 3, 40, 40]
    assert result["windows"]["count"] == 2
    memory = result["memory"]
    assert 0 < memory["rss_start_mb"] <= memory["peak_rss_mb"]
    assert memory["peak_rss_above_start_mb"] > 1.0  # ONNX Runtime and its session take memory
    assert memory["peak_rss_mb"] < peak_rss_mb()  # not this (torch-laden) test process
    assert memory["load_s"] > 0 and result["size"]["bytes"] == artifact.path.stat().st_size
    assert "gpu_used_mb" not in memory or isinstance(memory["gpu_used_mb"], float)
    assert str(os.getpid()) not in json.dumps(result)  # sanity: nothing of ours leaked into the answer


def test_isolated_failure_is_one_line(exported, tmp_path):
    source = exported["tiny_convnet"]
    shutil.copy(source.sidecar, tmp_path / source.sidecar.name)
    (tmp_path / source.path.name).write_bytes(b"not an onnx model at all")
    broken = Artifact.load(tmp_path / source.sidecar.name)
    with pytest.raises(IsolatedProfileError) as caught:
        profile_isolated(broken, QUICK)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"isolated profile of {source.path.name}: ")
    assert "cannot load" in message


def test_isolated_refuses_a_shape_in_the_child_in_one_line(exported):
    with pytest.raises(IsolatedProfileError, match="axis 1 of input 'image' is fixed at 3"):
        profile_isolated(exported["tiny_convnet"], QUICK, shapes={"image": (1, 4, 8, 8)})


def test_cli_profile_isolate(cli, exported, tmp_path):
    artifact = exported["tiny_pair_transformer"]
    saved = tmp_path / "profile.json"
    result = cli("profile", artifact.sidecar, "--isolate", "--json", "--duration", "0", "--iterations", "5",
                 "--warmup", "0", "--threads", "1", "--save", saved)
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["isolated"] and data["memory"]["peak_rss_mb"] > 0 and json.loads(saved.read_text()) == data
    text = cli("profile", artifact.sidecar, "--isolate", "--duration", "0", "--iterations", "3", "--warmup", "0")
    assert text.code == 0 and "peak resident memory" in text.out
    assert_one_line_error(cli("profile", tmp_path / "gone.onnx", "--isolate"), "does not exist")


def test_rss_readings_are_consistent():
    assert 0 < rss_mb() <= rss_mb("VmHWM") <= peak_rss_mb() + 1
