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


def tree_state(root: Path, *, ignore: tuple[str, ...] = ()) -> dict[str, tuple[int, int, int]]:
    """Every file under ``root`` (relative path -> size, mtime_ns, mode), to show later that nothing changed;
    files under a folder named in ``ignore`` (e.g. a run's ``.cache``: resumable state) are left out."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(root.rglob("*")) if (p.is_file() or p.is_symlink())
            and not set(ignore) & set(p.relative_to(root).parts[:-1])}


def assert_untouched_outside(root: Path, before: dict, out_dir: Path | None = None) -> None:
    """Nothing under ``root`` changed since ``before = tree_state(root)``, except inside ``out_dir``."""
    root = Path(root)
    skip = Path(out_dir).resolve().relative_to(root.resolve()).as_posix() + "/" if out_dir else None
    after = {k: v for k, v in tree_state(root).items() if not (skip and k.startswith(skip))}
    before = {k: v for k, v in before.items() if not (skip and k.startswith(skip))}
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}


def assert_no_partial_files(folder: Path) -> None:
    """No temporary (``.NAME.*.tmp*``) or half-written leftovers under ``folder``."""
    leftovers = [p for p in Path(folder).rglob("*") if ".tmp" in p.name or p.name.endswith((".partial", ".old"))]
    assert not leftovers, leftovers
