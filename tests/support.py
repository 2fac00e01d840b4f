"""What tests share besides fixtures: paths, the built-in model kinds, the one-line-error assertion."""
from __future__ import annotations

import dataclasses
from pathlib import Path

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
SHARED = TESTS.parents[1] / "shared"
MODEL_KINDS = ("tiny_convnet", "tiny_pair_transformer", "tiny_token_bilstm")


@dataclasses.dataclass
class CliResult:
    code: int
    out: str
    err: str


def assert_one_line_error(result: CliResult, *needles: str) -> None:
    """Bad input: exit 2, one line on stderr naming the problem, no traceback."""
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in lines[0], lines[0]
