"""Ctrl-C during training: stop at a safe point instead of inside a running XLA computation.

A KeyboardInterrupt raised while JAX still has computations in flight (dispatch is asynchronous)
or while orbax is writing unwinds the interpreter under running native threads, which crashed
with a segmentation fault (exit 139) in most tries. Inside `deferred()` the first SIGINT only sets
a flag; the trainer calls `check()` between chunks, where nothing is in flight, saves a
checkpoint and raises `Interrupted`, which the CLI reports in one line (exit 130, how to resume).
A second Ctrl-C is the default one (an immediate KeyboardInterrupt), for a user who insists.
"""
from __future__ import annotations

import contextlib
import signal
import threading

_requested = False


class Interrupted(Exception):
    """Training stopped at a safe point after Ctrl-C; the message says what was kept."""


def _handler(signum, frame) -> None:
    global _requested
    _requested = True
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C is immediate


@contextlib.contextmanager
def deferred():
    """Within the block, Ctrl-C requests a stop (`requested()`) instead of raising at once. Only
    the main thread can own signal handlers; elsewhere the block changes nothing."""
    global _requested
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # e.g. started with nohup
        _requested = False  # no handler here: a stale request must not stop this block
        try:
            yield
        finally:
            _requested = False
        return
    previous = signal.signal(signal.SIGINT, _handler)
    _requested = False
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False


def requested() -> bool:
    return _requested


def check(what: str) -> None:
    """Raises `Interrupted` (saying `what` was kept) when a stop was requested."""
    if _requested:
        raise Interrupted(what)
