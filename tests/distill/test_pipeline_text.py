"""`compress run` of a tiny text-embedding recipe (the pretrained all-MiniLM-L6-v2 teacher from its package, a
1-layer student, a few sentences and steps): the report holds the agreement metrics through every engine, the
INT8 engine passed its gate, and the bundle carries the tokenizer and verifies."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from compressor.distill.data.text import build_corpus, parse_gloss
from tests.distill.gate_checks import assert_int8_gate_measured

TINY = """
name: tiny-text
task: text-embedding
seed: 1
data: {train_sentences: 400, heldout_sentences: 40, retrieval_pairs: 40, max_tokens: 32, calibration_batch: 4}
teacher: {model: minilm_l6_v2}
student:
  model: text_student
  layers: 1
  init_layers: [0]
  train: {iterations: 30, lr: 0.0005, batch: 32}
distill: {alignment: 1.0, relation: 0.5}
profile_tokens: 16
deploy:
  targets: [{target: onnxruntime}, {target: onnxruntime, precision: int8, quantizer: dynamic}]
  int8_budget: 0.02
  calibration_samples: 3
  compare_count: 1
  profile_seconds: 0.05
  profile_iterations: 3
"""
METRICS = {"cosine_to_teacher", "cosine_to_teacher_p10", "similarity_rank_agreement", "neighbour_agreement",
           "neighbour_overlap_at_10", "retrieval_top1"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from compressor.cli import main

    recipe = tmp_path_factory.mktemp("recipe") / "tiny-text.yaml"
    recipe.write_text(textwrap.dedent(TINY))
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_report_holds_agreement_with_the_teacher_for_every_role(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["task"] == "text-embedding" and report["headline_metric"] == "cosine_to_teacher"
    models = report["models"]
    for role in ("teacher", "student", "baseline"):
        assert METRICS <= set(models[role]["metric"])
        assert -1.0 <= models[role]["metric"]["cosine_to_teacher"] <= 1.0
    assert models["teacher"]["metric"]["cosine_to_teacher"] > 0.9999  # the teacher's own engine
    assert models["teacher"]["metric"]["similarity_rank_agreement"] > 0.999
    assert models["teacher"]["training"] == {} and "pretrained" in models["teacher"]["origin"]
    init = report["details"]["student_initialisation"]["cosine_to_teacher"]
    assert init + 0.05 < models["student"]["metric"]["cosine_to_teacher"] < 0.9999  # 30 steps of KD help
    assert models["student"]["params"] == models["baseline"]["params"] < models["teacher"]["params"]
    assert "SimCSE" in models["baseline"]["origin"] and "with KD" in models["student"]["origin"]
    assert all(a["parity"]["passed"] for a in report["artifacts"] if a["precision"] == "fp32")
    assert report["summary"]["teacher_to_student_latency_ratio"] > 1.0
    details = report["details"]
    assert details["data"]["heldout_sentences"] == 40 and details["data"]["retrieval_pairs"] == 40
    assert METRICS <= set(details["student_initialisation"])
    assert "## Text embedding" in (tiny_run / "report.md").read_text()


@pytest.mark.slow
def test_int8_student_is_gated_on_cosine_to_teacher(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    gate = assert_int8_gate_measured(report, budget=0.02)
    assert gate["quantizer"] == "dynamic"
    (int8,) = [a for a in report["artifacts"] if a["precision"] == "int8"]
    assert int8["parity"]["passed"] and int8["parity"]["outputs"][0]["sqnr_db"] >= 20  # on the task's sentences


@pytest.mark.slow
def test_bundle_carries_the_tokenizer_and_verifies(tiny_run):
    from compressor.targets.bundle import verify_bundle

    folder = tiny_run / "bundle" / "tiny-text-student"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"run.py", "tokenizer.json", "vocab.txt", "text_config.json", "NOTICE-text"} <= set(manifest["files"])
    config = json.loads((folder / "text_config.json").read_text())
    assert config["max_tokens"] == 32 and config["inputs"] == ["input_ids", "attention_mask"]
    assert verify_bundle(tiny_run / "bundle" / "tiny-text-student.tar.gz")["selftest"]["selftest"] is True


def test_glosses_parse_into_definition_and_examples():
    gloss = parse_gloss('the act of interpreting something; "her rendition of Milton\'s verse was moving"; "ok"  \n')
    assert gloss.definition == "the act of interpreting something"
    assert gloss.examples == ("her rendition of Milton's verse was moving",)  # "ok" is too short to keep
    assert parse_gloss("abounding in sap").examples == ()


def test_corpus_holds_out_what_it_evaluates_on():
    corpus = build_corpus(sources=("wordnet", "news"), train_sentences=3000, heldout_sentences=50,
                          retrieval_pairs=60, seed=3)
    assert len(corpus.train) == 3000 and len(corpus.heldout) == 50 and len(corpus.examples) == 60
    assert not set(corpus.train) & (set(corpus.heldout) | set(corpus.examples) | set(corpus.definitions))
    again = build_corpus(sources=("wordnet", "news"), train_sentences=3000, heldout_sentences=50,
                         retrieval_pairs=60, seed=3)
    assert again == corpus
    assert np.mean([len(s.split()) for s in corpus.heldout]) > 10  # news sentences, not glosses


def test_builtin_recipe_and_its_quick_form():
    from compressor.distill.recipe import builtin_recipes, load_recipe

    assert "text-minilm" in builtin_recipes()
    full, quick = load_recipe("text-minilm"), load_recipe("text-minilm", quick=True)
    assert full.task == quick.task == "text-embedding"
    assert full.settings.teacher.model == quick.settings.teacher.model == "minilm_l6_v2"
    assert quick.settings.student.train.iterations < full.settings.student.train.iterations
    assert {(t.target, t.precision) for t in quick.deploy.targets} >= {("onnxruntime", "fp32"),
                                                                         ("openvino", "fp32"),
                                                                         ("onnxruntime", "int8")}


def test_bad_text_settings_name_the_key(tmp_path):
    from compressor.distill.config import ConfigError
    from compressor.distill.recipe import load_recipe
    from compressor.distill.tasks import TASKS
    from compressor.distill.tasks.base import RunContext

    (tmp_path / "bad.yaml").write_text(textwrap.dedent(TINY).replace("relation: 0.5", "relation: 0.5, baseline: x"))
    with pytest.raises(ConfigError, match="distill.baseline"):
        load_recipe(str(tmp_path / "bad.yaml"))
    (tmp_path / "src.yaml").write_text(textwrap.dedent(TINY).replace("max_tokens: 32", "sources: [poems]"))
    recipe = load_recipe(str(tmp_path / "src.yaml"))
    task = TASKS.get(recipe.task)(recipe.settings, RunContext(out_dir=tmp_path, seed=0, quick=False,
                                                              stage=lambda _: None))
    with pytest.raises(ConfigError, match="data.sources: poems"):
        task.check_inputs()
