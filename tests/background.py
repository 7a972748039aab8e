"""Long, independent runs that start when the test session starts and are read later.

pytest runs one test at a time, and many tests keep only one of the machine's two cores
busy: a 1-rank phase, a hang waited out to its ``--timeout``, a NeMo import. Runs that
depend on no other test (the mutant catalogs' self-tests, the plugin's inner pytest, a
hang, a one-rank failure) therefore run in a background lane from the session's first
test, filling those gaps; the test that reads one waits for it then (and starts it at once
if the lane has not reached it yet). It is the same command, judged by the same
assertions: only its start moves.

The lane runs its runs one after another, in the order the session's tests first read
them (``background_runs``: the run needed first is ready first). A run registered as
``idle`` (it mostly waits: a hang waited out to its ``--timeout``, a Slurm job's wrapper)
is started in its turn but does not hold the lane: the next one starts beside it.

A test module registers the run with the name of the fixture that reads it
(:func:`register`); the session fixture ``background_runs`` (``tests/conftest.py``) runs
the registered runs some collected test needs, and ends any still running at the
session's end (a failed or interrupted session leaves no process behind).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Registered:
    command: Callable[[Path], list[str]]  # the command, given the run's own directory
    timeout: float  # seconds from its start
    cwd: Callable[[Path], Path] | None = None  # the working directory (default: the repository)
    env: Mapping[str, str] | None = None  # added to the session's environment
    idle: bool = False  # mostly waits: started in turn, but the next run starts beside it
    fixture: str = ""  # the fixture that reads it: the run is needed when a collected test uses it


@dataclass
class BackgroundRun:
    """One command run in its own session, its output going to files until it is read."""

    registered: Registered
    out_dir: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)
    started: float = field(default=0.0, init=False)
    ended: float | None = field(default=None, init=False)
    closed: bool = field(default=False, init=False)
    _finished: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def timeout(self) -> float:
        return self.registered.timeout

    @property
    def wall_s(self) -> float | None:
        """Seconds from its start to its end (None while it runs)."""
        return None if self.ended is None else self.ended - self.started

    def start(self) -> None:
        """Starts the run unless it was started (or the session has ended)."""
        with self._lock:
            if self.popen is not None or self.closed:
                return
            self.out_dir.mkdir(parents=True, exist_ok=True)
            command = self.registered.command(self.out_dir)
            cwd = self.registered.cwd(self.out_dir) if self.registered.cwd else REPO
            # No run directory or pytest state inherited; its own session, so that stop()
            # ends the whole tree.
            env = {k: v for k, v in os.environ.items() if not k.startswith(("STOP_AND_GO_", "PYTEST_"))}
            env.update(self.registered.env or {})
            with open(self.out_dir / "stdout", "wb") as out, open(self.out_dir / "stderr", "wb") as err:
                self.popen = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True)
            self.started = time.monotonic()
            # Reaped as soon as it ends, so that wall_s is its own time, not the reader's.
            threading.Thread(target=self._reap, name=f"reap-{self.out_dir.name}", daemon=True).start()

    def _reap(self) -> None:
        assert self.popen is not None
        self.popen.wait()
        self.ended = time.monotonic()
        self._finished.set()

    def wait_finished(self) -> None:
        """Blocks until the run has ended (the lane's wait; no timeout: the reader enforces it)."""
        self._finished.wait()

    def wait(self) -> subprocess.CompletedProcess[str]:
        """Waits for the run (up to its timeout from its start) and returns what it printed."""
        self.start()  # the lane has not reached it yet: it is needed now
        assert self.popen is not None, "the session has ended"
        left = self.timeout - (time.monotonic() - self.started)
        if not self._finished.wait(timeout=max(left, 1.0)):
            self.stop()
            raise subprocess.TimeoutExpired(self.popen.args, self.timeout)
        read = lambda name: (self.out_dir / name).read_text(encoding="utf-8", errors="replace")  # noqa: E731
        return subprocess.CompletedProcess(self.popen.args, self.popen.returncode, read("stdout"), read("stderr"))

    def stop(self) -> None:
        """Ends the run if it still runs: SIGTERM (the orchestrator then ends its own runs), then SIGKILL."""
        with self._lock:
            self.closed = True
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        except ProcessLookupError:
            pass  # it ended meanwhile


def run_in_turn(runs: list[BackgroundRun]) -> threading.Thread:
    """Runs ``runs`` in turn in a daemon thread (the lane); returns the thread.

    An ``idle`` run is started in its turn and left to run beside the next ones.
    """

    def lane() -> None:
        for run in runs:
            run.start()
            if run.popen is None:
                return  # the session has ended
            if not run.registered.idle:
                run.wait_finished()

    thread = threading.Thread(target=lane, name="background-lane", daemon=True)
    thread.start()
    return thread


REGISTRY: dict[str, Registered] = {}


def register(
    name: str,
    command: Callable[[Path], list[str]],
    timeout: float,
    cwd: Callable[[Path], Path] | None = None,
    env: Mapping[str, str] | None = None,
    idle: bool = False,
    fixture: str | None = None,
) -> None:
    """Registers the background run ``name``, read by the fixture ``fixture`` (default: ``name``).

    ``command`` and ``cwd`` get the run's own directory when it starts; ``timeout`` counts
    from its start; ``env`` is added to the session's environment. An ``idle`` run does not
    hold the lane.
    """
    REGISTRY[name] = Registered(command, timeout, cwd, env, idle, fixture or name)
