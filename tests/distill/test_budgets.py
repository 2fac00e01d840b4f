"""Budgets that gate CI (``--budget KEY=N,...``): parsing, checks against a profile, a run's selected engine and a
bundle; a broken budget is exit 1 naming each one in one line, a malformed one exit 2."""
from __future__ import annotations

import pytest

from compressor.distill.budgets import (
    Budget,
    BudgetError,
    Measured,
    check_budget,
    check_profile,
    parse_budget,
)

PROFILE = {"target": "openvino", "precision": "int8", "throughput_fps": 40.0, "cov": 0.02,
           "latency_ms": {"median": 20.0, "mean": 21.0, "p90": 24.0, "p99": 30.0, "min": 19.0, "max": 31.0}}


def test_a_budget_parses_into_ceilings_in_the_order_given():
    budget = parse_budget(" p99_ms=25 , metric_drop=0.1,size_mb=4")
    assert budget.limits == (("p99_ms", 25.0), ("metric_drop", 0.1), ("size_mb", 4.0))
    assert not parse_budget(None) and budget


@pytest.mark.parametrize("text, problem", [
    ("p99=5", "unknown key 'p99' (did you mean 'p99_ms'?)"),
    ("p99_ms", "'p99_ms' is not KEY=NUMBER"),
    ("p99_ms=fast", "p99_ms='fast' is not a number"),
    ("p99_ms=-1", "p99_ms must be a finite number >= 0, got -1"),
    ("p99_ms=nan", "p99_ms must be a finite number >= 0"),
    ("size_mb=inf", "size_mb must be a finite number >= 0"),
    ("p99_ms=5,p99_ms=6", "p99_ms is given twice"),
    (" , ", "--budget: empty"),
    ("p99_ms=5,si\x1bze=1", "unknown key 'si\\x1bze'"),
])
def test_a_malformed_budget_is_one_line(text, problem):
    with pytest.raises(BudgetError) as caught:
        parse_budget(text)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_each_broken_budget_is_named_in_one_line_and_held_ones_are_not():
    result = check_profile(parse_budget("median_ms=25,p99_ms=25,size_mb=1"), PROFILE, size_bytes=3_500_000)
    assert not result.passed and [c.key for c in result.broken] == ["p99_ms", "size_mb"]
    assert result.line() == "budget broken on the profile of openvino int8: p99_ms 30 > 25, size_mb 3.5 > 1"
    held = check_profile(parse_budget("p99_ms=30,median_ms=20"), PROFILE)  # exactly the ceiling holds
    assert held.passed and held.line() == "budget held on the profile of openvino int8: p99_ms 30 <= 30, " \
                                          "median_ms 20 <= 20"
    assert held.to_dict()["checks"][0] == {"key": "p99_ms", "limit": 30.0, "value": 30.0, "held": True}


def test_a_budget_the_subject_cannot_answer_is_bad_input_never_a_pass():
    with pytest.raises(BudgetError, match="metric_drop cannot be checked on the profile of openvino int8"):
        check_profile(parse_budget("p99_ms=100,metric_drop=0.1"), PROFILE)
    with pytest.raises(BudgetError, match="size_mb cannot be checked"):
        check_profile(parse_budget("size_mb=1"), PROFILE)  # no size given
    with pytest.raises(BudgetError, match="p99_ms cannot be checked"):
        check_budget(Budget((("p99_ms", 1.0),)), Measured("x", {"p99_ms": None}))
