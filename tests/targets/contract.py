"""The contract every target honours, written once; each target's test module subclasses it."""
from __future__ import annotations

import numpy as np
import pytest

from compressor.core.errors import InputSpecError, UnsupportedPrecisionError
from compressor.core.feeds import random_feed, random_feeds
from compressor.models import create_model
from compressor.targets.base import Artifact
from compressor.targets.compare import Tolerance, compare_runners
from compressor.targets.profile import ProfileOptions, profile_runner
from compressor.targets.table import load_target
from compressor.targets.torch_runner import TorchRunner
from tests.support import MODEL_KINDS


class TargetContract:
    """Subclasses set ``target``, ``precision``, ``package`` and maybe ``options`` (the ``built`` fixture is in
    this folder's conftest.py)."""

    target = ""
    precision = "fp32"
    package = ""
    options: dict = {}

    def test_build_writes_files_and_sidecar(self, built):
        for artifact in built.values():
            assert artifact.sidecar.exists()
            assert all((artifact.folder / f).stat().st_size > 0 for f in artifact.files)
            reloaded = Artifact.load(artifact.sidecar)
            assert (reloaded.target, reloaded.precision) == (self.target, self.precision)
            assert reloaded.inputs == artifact.inputs
            assert Artifact.load(artifact.path).path == artifact.path

    @pytest.mark.parametrize("name", MODEL_KINDS)
    def test_matches_pytorch_at_batch_1_2_3(self, built, name):
        artifact = built[name]
        model = create_model(name)
        feeds = random_feeds(artifact.inputs, count=2, batches=(1, 2, 3), seed=3)
        with TorchRunner(model, artifact.inputs, model.output_names) as ref, \
                load_target(self.target).load_runner(artifact) as runner:
            report = compare_runners(ref, runner, feeds, Tolerance.for_precision(self.precision))
        assert report.passed, report.to_dict()
        assert report.feeds == 6

    def test_runner_validates_names_dtypes_and_shapes(self, built):
        artifact = built["tiny_pair_transformer"]
        good = random_feed(artifact.inputs, batch=2)
        with load_target(self.target).load_runner(artifact) as runner:
            with pytest.raises(InputSpecError, match="missing input"):
                runner.infer({"template": good["template"]})
            with pytest.raises(InputSpecError, match="unknown input"):
                runner.infer({**good, "extra": good["search"]})
            with pytest.raises(InputSpecError, match="dtype float64"):
                runner.infer({**good, "search": good["search"].astype(np.float64)})
            with pytest.raises(InputSpecError, match="expected Nx3x64x64"):
                runner.infer({**good, "search": good["search"][:, :, :32]})
            with pytest.raises(InputSpecError, match="N=1 but another input has N=2"):
                runner.infer({**good, "search": good["search"][:1]})
            outputs = runner.infer(good)
        assert set(outputs) == {"score", "box"} and outputs["box"].shape == (2, 4)

    def test_unsupported_precision_raises(self, built, exported, tmp_path):
        with pytest.raises(UnsupportedPrecisionError, match="does not support precision 'int4'"):
            load_target(self.target).build(exported["tiny_convnet"].path, precision="int4", out_dir=tmp_path)

    def test_profile_binds_once_and_reports_statistics(self, built):
        with load_target(self.target).load_runner(built["tiny_convnet"], threads=1) as runner:
            result = profile_runner(runner, ProfileOptions(batch=2, threads=1, warmup_s=0.05, min_iterations=20,
                                                           min_duration_s=0.2))
        lat = result["latency_ms"]
        assert result["iterations"] >= 20 and result["protocol"]["timed_s"] >= 0.2
        assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert result["throughput_fps"] > 0 and result["protocol"]["batch"] == 2
