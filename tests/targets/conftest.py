"""Fixtures of the target tests: the built-in model kinds built for a test class's target and precision."""
from __future__ import annotations

import importlib.util

import pytest

from compressor.core.errors import MissingDependencyError
from compressor.core.feeds import random_feeds
from compressor.targets.table import load_target


@pytest.fixture(scope="class")
def built(request, exported, tmp_path_factory):
    """``{model_name: Artifact}`` built for the test class's target and precision."""
    cls = request.cls
    if importlib.util.find_spec(cls.package) is None:
        pytest.skip(f"{cls.package} is not installed")
    folder = tmp_path_factory.mktemp(f"{cls.target}-{cls.precision}")
    try:
        builder = load_target(cls.target)
        if cls.target == "tensorrt":
            from compressor.targets.tensorrt import gpu_name, tensorrt_version

            tensorrt_version(), gpu_name()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    built = {}
    for name, artifact in exported.items():
        calibration = random_feeds(artifact.inputs, count=8, seed=11) if cls.precision == "int8" else None
        built[name] = builder.build(artifact.path, precision=cls.precision, out_dir=folder, calibration=calibration,
                                    options=dict(cls.options))
    return built
