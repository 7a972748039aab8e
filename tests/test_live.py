"""The live terminal view under a real pseudo-terminal, and plain lines without one."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_SPEC, REPO, SPECS, Run, assert_nothing_left, orchestrator_command

pytestmark = pytest.mark.timeout(900)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Cursor movement and line erasing: what a redrawn live display emits and plain output never does.
REDRAW = re.compile(r"\x1b\[(\d*A|2K|\?25l)")


def run_in_pty(command: list[str], timeout: float = 800) -> tuple[int, str]:
    """Runs ``command`` with a pseudo-terminal as stdin/stdout/stderr; returns (exit code, output)."""
    env = dict(os.environ, COLUMNS="120", LINES="40", TERM="xterm-256color")
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the command, its terminal is the pty
        os.chdir(REPO)
        os.execvpe(command[0], command, env)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGINT)  # the orchestrator kills its workers, then exits
                deadline += 60
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    # One resume is enough for the view (the default scenario's go1 is test_end_to_end's).
    run_dir = tmp_path_factory.mktemp("live") / "run"
    code, output = run_in_pty(orchestrator_command(DEFAULT_SPEC, run_dir, "--single-stop"))
    return code, output, run_dir


def test_live_view_redraws_and_ends_verified(live_run: tuple[int, str, Path]) -> None:
    code, output, run_dir = live_run
    assert code == 0, ANSI.sub("", output)[-4000:]
    assert len(REDRAW.findall(output)) > 10  # a display redrawn in place, not appended lines
    assert "[orchestrator]" not in output  # the plain sink was not used
    text = ANSI.sub("", output)
    assert "✔ verdict: resume verified" in text
    assert_nothing_left(run_dir)


def test_live_view_shows_phases_steps_and_the_kill(live_run: tuple[int, str, Path]) -> None:
    text = ANSI.sub("", live_run[1])
    # The last frame: every phase with its state and each rank's step.
    final = text[text.rindex("stop-and-go tiny_lightning.py") :]
    assert re.search(r"stop\s+✕ killed\s+r0 \S+ 2/12", final), final[:2000]
    assert re.search(r"go\s+✓ finished\s+r0 \S+ 12/12", final), final[:2000]
    assert re.search(r"continuous\s+✓ finished\s+r0 \S+ 12/12", final), final[:2000]
    assert re.search(r"\br1 \S+ 12/12", final)
    assert "stop: sentinel at step 2" in final
    assert re.search(r"✕ stop: \d+ processes killed with SIGKILL", final)
    # go's workers are fresh: pre-warmed by their own torchrun during stop, or relaunched after the kill.
    assert re.search(r"go: (fresh workers pre-warming|relaunched fresh workers)", final), final[:2000]
    # While it ran, the step counters moved (frames with a go step between 2 and 12).
    assert re.search(r"go\s+running\s+r0 \S+ ([3-9]|1[01])/12", text) or re.search(r"r0 \S+ ([3-9]|1[01])/12", text)


def test_summary_table_is_coloured_by_verdict(live_run: tuple[int, str, Path]) -> None:
    output = live_run[1]
    text = ANSI.sub("", output)
    summary = text[text.rindex("metrics") :]
    for column in ("metric", "rank", "saved", "resumed", "reference", "verdict"):
        assert column in summary
    assert re.search(r"learning_rate\s*│\s*all\s*│\s*0\.0375", summary)
    # "ok" cells are green, the verdict line bold green.
    assert "\x1b[32mok" in output
    assert re.search(r"\x1b\[1;32m✔ verdict: resume verified", output)


def _assert_line_based(code: int, output: str) -> None:
    assert code == 2, output[-3000:]
    assert not REDRAW.search(output)
    assert "\x1b[" not in output
    assert "[orchestrator] stop: launched torchrun" in output
    # Every event is a line of its own, up to the report.
    lines = [line for line in output.splitlines() if line.strip()]
    report = next(i for i, line in enumerate(lines) if line.startswith("stop-and-go report"))
    assert report >= 2 and all(line.startswith("[") for line in lines[:report]), lines[: report + 1]


def test_plain_output_stays_line_based_on_a_terminal(tmp_path: Path) -> None:
    # A spec error found by the workers: a short run through the whole event path (one
    # rank, nothing pre-warmed; the piped run below has go pre-warming).
    extra = ("--plain", "--no-prewarm", "--nproc-per-node", "1")
    command = orchestrator_command(SPECS / "no_harness.py", tmp_path / "run", *extra)
    _assert_line_based(*run_in_pty(command, timeout=300))


def test_plain_output_stays_line_based_in_a_pipe(no_harness_run: tuple[Run, Path]) -> None:
    run, _ = no_harness_run  # the same spec error, piped: the session's shared run
    _assert_line_based(run.returncode, run.stdout)


def test_live_view_is_not_imported_by_a_plain_run() -> None:
    # rich is for terminals only; a piped run must not pay for it.
    probe = "import sys, orchestrator.cli; print('rich' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr
