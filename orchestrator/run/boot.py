"""Dying with the parent process: PR_SET_PDEATHSIG, armed before anything slow is imported.

Every process of a run must die with the process that started it: the torchrun agent
with the orchestrator, each worker with its agent. The agent gets the signal armed
between fork and exec (``parent_death_preexec``, the launchers' ``preexec_fn``); torchrun
starts the workers itself, so each worker runs through this module first:

    python -m torch.distributed.run ... -m orchestrator.run.boot workers.entry ARGS...

which arms the signal within milliseconds of the worker's start and only then runs the
worker module as ``__main__`` (its import of torch and lightning takes seconds, during
which a worker armed afterwards would outlive a killed orchestrator by as long).

This module imports only the standard library, and only ``orchestrator`` (whose
``__init__`` imports nothing) lies on its import path: ``workers``' own ``__init__``
imports torch.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys
from collections.abc import Callable

BOOT_MODULE = "orchestrator.run.boot"
# Duplicated from orchestrator.protocol.ENV_RUN_ID: importing the protocol here would
# cost the milliseconds this module exists to save.
_ENV_RUN_ID = "STOP_AND_GO_RUN_ID"
_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None


def _prctl() -> Callable[..., int] | None:
    # Loaded once, in the parent: a forked child must not dlopen (a lock another thread
    # of the parent held at fork time would never be released in the child).
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc.prctl


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Asks Linux to send ``sig`` to this process when its parent dies (PR_SET_PDEATHSIG).

    Linux sends it when the *thread* that forked this process ends, so a launcher must
    start processes from a thread that lives as long as they should (the main thread).
    Returns False where the call is unavailable (not Linux).
    """
    prctl = _prctl()
    return prctl is not None and prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def orphaned(parent_pid: int | None = None) -> bool:
    """Whether this process's parent died before the death signal was armed.

    The parent is gone if this process was re-parented: to ``parent_pid`` where it is
    known; else to init, or to a subreaper that is no process of this run (it lacks the
    run id this process carries in its environment).
    """
    ppid = os.getppid()
    if parent_pid is not None:
        return ppid != parent_pid
    if ppid == 1:
        return True
    tag = os.environ.get(_ENV_RUN_ID)
    if not tag:
        return False
    try:
        with open(f"/proc/{ppid}/environ", "rb") as environ:
            return f"{_ENV_RUN_ID}={tag}".encode() not in environ.read().split(b"\0")
    except OSError:  # not Linux, or not ours to read: trust the parent
        return False


def die_with_parent(parent_pid: int | None = None) -> None:
    """Arms the parent-death signal; exits at once if the parent has already died."""
    set_parent_death_signal()
    if orphaned(parent_pid):
        os._exit(1)


def parent_death_preexec() -> Callable[[], None]:
    """A ``Popen(preexec_fn=...)`` that makes the child die with this process (this thread).

    It runs in the child between fork and exec, so the signal is armed before the child
    runs any code of its own; a parent that died before that makes the child exit.
    """
    parent = os.getpid()
    _prctl()  # load libc here, in the parent

    def arm() -> None:
        die_with_parent(parent)

    return arm


def booted(worker_argv: list[str]) -> list[str]:
    """``-m MODULE ARGS...`` (what torchrun runs per worker) run through this module first."""
    if worker_argv[:1] != ["-m"] or len(worker_argv) < 2:
        raise ValueError(f"expected -m MODULE ARGS..., got {worker_argv[:2]}")
    return ["-m", BOOT_MODULE, *worker_argv[1:]]


def main(argv: list[str] | None = None) -> None:
    """Arms the death signal, then runs ``argv[0]`` as ``__main__`` with the rest as its arguments."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise SystemExit(f"usage: python -m {BOOT_MODULE} MODULE [ARGS...]")
    die_with_parent()
    sys.argv = [argv[0], *argv[1:]]  # run_module sets argv[0] to the module's file
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
