"""The bundle scripts' way to fail: one ``error: ...`` line on stderr and exit status 2.

:class:`OneLineParser` makes argparse fail the same way (no usage block), and the argument types below
refuse nonsense numbers (``--batch 0``, ``--threads -1``, ``--seconds inf``) before anything runs.
"""
from __future__ import annotations

import argparse
import math
import sys

EXIT_ERROR = 2
"""Exit status of a script that stopped on bad input (the toolchain's CLI uses the same)."""


def print_error(exc: BaseException) -> int:
    """Print the first line of ``exc`` (or its type when it has no message) as ``error: ...``; return 2."""
    text = str(exc).strip()
    print(f"error: {text.splitlines()[0] if text else type(exc).__name__}", file=sys.stderr)
    return EXIT_ERROR


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes end in one ``error: ...`` line and exit status 2."""

    def error(self, message):
        print(f"error: {message.splitlines()[0] if message else 'bad arguments'} (see --help)", file=sys.stderr)
        sys.exit(EXIT_ERROR)


def int_between(low, high):
    """An argparse type: an integer in [low, high]."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value
    parse.__name__ = "integer"
    return parse


def number_between(low, high):
    """An argparse type: a finite number in (low, high] (seconds, milliseconds, a speed)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not low < value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not a finite number above {low:g} and at most {high:g}")
        return value
    parse.__name__ = "number"
    return parse
