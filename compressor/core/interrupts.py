"""SIGTERM handled like Ctrl-C while output is staged, so ``finally`` blocks remove what was half-made."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`KeyboardInterrupt` in the main thread (as SIGINT does) instead
    of ending the process on the spot; the previous handler is restored afterwards. Elsewhere than the main
    thread (where Python cannot take signals) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while the block runs (a few renames that must happen together): one that
    arrives meanwhile is raised as :class:`KeyboardInterrupt` once the block is done. Outside the main thread
    this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum, frame):
        held.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held:
        raise KeyboardInterrupt(f"signal {held[0]}")
