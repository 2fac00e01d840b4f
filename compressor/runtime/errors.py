"""The bundle scripts' way to fail: one ``error: ...`` line on stderr and exit status 2."""
from __future__ import annotations

import sys

EXIT_ERROR = 2
"""Exit status of a script that stopped on bad input (the toolchain's CLI uses the same)."""


def print_error(exc: BaseException) -> int:
    """Print the first line of ``exc`` (or its type when it has no message) as ``error: ...``; return 2."""
    text = str(exc).strip()
    print(f"error: {text.splitlines()[0] if text else type(exc).__name__}", file=sys.stderr)
    return EXIT_ERROR
