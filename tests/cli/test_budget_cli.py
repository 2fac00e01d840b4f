"""``--budget`` on the command line: ``compress bundle verify --budget`` reads the bundle's profile, model size and
selection, exits 1 naming each broken budget in one line, 2 for a malformed one; ``compress run --budget`` is
checked before anything runs (the run itself is tested in tests/distill/test_select.py)."""
from __future__ import annotations

import json

import pytest

from compressor.distill.budgets import BudgetError, check_bundle, parse_budget
from tests.support import assert_one_line_error


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, exported):
    """A bundle of the tiny convnet's ONNX Runtime FP32 engine (no selection.json: not from 'compress run')."""
    from compressor.targets.bundle import create_bundle
    from compressor.targets.profile import ProfileOptions
    from compressor.targets.table import load_target

    folder = tmp_path_factory.mktemp("budget-bundle")
    artifact = load_target("onnxruntime").build(exported["tiny_convnet"].path, precision="fp32", out_dir=folder,
                                                name="tiny")
    return create_bundle(artifact, folder / "bundles", name="tiny",
                         profile_options=ProfileOptions(min_iterations=5, min_duration_s=0.05))


def test_bundle_budgets_read_its_profile_and_model_size(bundle):
    profile = json.loads((bundle.folder / "profile.json").read_text())
    manifest = json.loads((bundle.folder / "manifest.json").read_text())
    model_bytes = sum(size for rel, size in manifest["sizes"].items() if rel.startswith("model/"))
    for where in (bundle.folder, bundle.archive):
        result = check_bundle(parse_budget("p99_ms=0,size_mb=1000"), where)
        assert [c.key for c in result.broken] == ["p99_ms"]
        assert result.checks[0].value == profile["latency_ms"]["p99"]
        assert result.checks[1].value == pytest.approx(model_bytes / 1e6)
    with pytest.raises(BudgetError, match="metric_drop cannot be checked on bundle tiny"):
        check_bundle(parse_budget("metric_drop=0.1"), bundle.archive)


def test_bundle_verify_budget_exits_1_naming_the_broken_one_and_2_when_malformed(cli, bundle):
    broken = cli("bundle", "verify", bundle.archive, "--budget", "p99_ms=0,size_mb=1000")
    assert broken.code == 1
    assert broken.err.strip().splitlines() == [broken.err.strip()] and broken.err.startswith(
        "budget broken on bundle tiny (onnxruntime fp32): p99_ms ")
    assert "self-test passed" in broken.out  # the bundle itself is fine; the budget is what failed
    held = cli("bundle", "verify", bundle.folder, "--budget", "size_mb=1000", "--json")
    assert held.code == 0 and json.loads(held.out)["budget"]["passed"] is True
    assert_one_line_error(cli("bundle", "verify", bundle.archive, "--budget", "p99ms=1"),
                          "unknown key 'p99ms' (did you mean 'p99_ms'?)")
    assert_one_line_error(cli("bundle", "verify", bundle.archive, "--budget", "metric_drop=0.1"),
                          "metric_drop cannot be checked on bundle tiny")


def test_run_budget_is_checked_before_anything_runs(cli, tmp_path):
    out = tmp_path / "run"
    assert_one_line_error(cli("run", "sr-dsclora", "--quick", "--out", out, "--budget", "p99_ms=1,size=2"),
                          "--budget: unknown key 'size'")
    assert not out.exists()


def test_profile_budget_exits_1_naming_the_broken_one_and_2_when_malformed(cli, exported):
    model = str(exported["tiny_convnet"].path)
    common = ("profile", model, "--duration", "0", "--iterations", "5", "--warmup", "0")
    kept = cli(*common, "--budget", "p99_ms=100000,size_mb=1000")
    assert kept.code == 0, kept.err
    broken = cli(*common, "--budget", "median_ms=0.000001,size_mb=1000")
    assert broken.code == 1 and "median_ms" in broken.err and "size_mb" not in broken.err.split("median_ms")[1]
    assert_one_line_error(cli(*common, "--budget", "metric_drop=0.1"), "metric_drop")
    assert_one_line_error(cli(*common, "--budget", "p99_ms=fast"), "p99_ms")
