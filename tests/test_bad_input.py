"""Bad input: one line on stderr, exit 2, no traceback (unless --verbose)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from tests.conftest import DEFAULT_SPEC, REPO, SPECS, Run, assert_nothing_left, one_line, run_orchestrator


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_missing_spec(tmp_path: Path) -> None:
    proc = _cli(str(tmp_path / "nope.py"), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert "spec file not found" in one_line(proc.stderr)


def test_syntax_error(tmp_path: Path) -> None:
    spec = tmp_path / "broken.py"
    spec.write_text("class Broken(\n")
    proc = _cli(str(spec), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert "syntax error in spec" in one_line(proc.stderr)
    assert "line 1" in proc.stderr


def test_spec_without_any_class(tmp_path: Path) -> None:
    spec = tmp_path / "empty.py"
    spec.write_text("x = 1\n")
    proc = _cli(str(spec), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert "defines no class" in one_line(proc.stderr)


def test_unknown_option() -> None:
    proc = _cli(str(DEFAULT_SPEC), "--kill-signal", "HUP")
    assert proc.returncode == 2
    assert "invalid choice" in one_line(proc.stderr)


@pytest.mark.parametrize(
    ("spec", "extra", "expected"),
    [
        ("two_harnesses.py", (), "choose one with --harness"),
        ("two_harnesses.py", ("--harness", "ThirdHarness"), "no harness class 'ThirdHarness'"),
        # Only stop's worker imports it (--no-prewarm, one rank).
        ("import_error.py", ("--no-prewarm", "--nproc-per-node", "1"), "ModuleNotFoundError"),
    ],
)
def test_spec_errors(tmp_path: Path, spec: str, extra: tuple[str, ...], expected: str) -> None:
    run = run_orchestrator(SPECS / spec, tmp_path / "run", *extra, "--quiet")
    assert run.returncode == 2, run.stderr
    assert expected in one_line(run.stderr)


def test_a_spec_error_found_by_the_workers_is_one_line(no_harness_run: tuple[Run, Path]) -> None:
    # The pre-warmed go (and go1, where the cores allow) imports the spec too; the run says it once.
    run, _ = no_harness_run
    assert run.returncode == 2, run.stderr
    assert "defines no StopAndGoHarness subclass" in one_line(run.stderr)
    assert_nothing_left(run.run_dir)


def test_run_dir_in_use_by_another_orchestrator(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with FileLock(str(run_dir / "orchestrator.lock")):
        proc = _cli(str(DEFAULT_SPEC), "--run-dir", str(run_dir))
    assert proc.returncode == 2
    assert "in use by another orchestrator" in one_line(proc.stderr)


def test_run_dir_with_an_earlier_run_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    proc = _cli(str(DEFAULT_SPEC), "--run-dir", str(run_dir))
    assert proc.returncode == 2
    assert "already holds a run" in one_line(proc.stderr)


def test_help_lists_exit_codes() -> None:
    proc = _cli("--help")
    assert proc.returncode == 0
    for code in ("0", "1", "2", "3", "4", "5", "130"):
        assert f"\n  {code:>3}  " in proc.stdout
    assert "--nproc-per-node N" in proc.stdout


def test_run_dir_that_cannot_be_created_exits_7(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = _cli(str(DEFAULT_SPEC), "--run-dir", str(blocker / "run"))
    assert proc.returncode == 7
    assert "cannot write run dir" in one_line(proc.stderr)


@pytest.fixture
def full_disk(tmp_path: Path):
    """A real, nearly full filesystem (a 256 KiB tmpfs filled up), or a skip."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        fd = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 1024):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_full_disk_exits_7_and_leaves_nothing_to_trust(full_disk: Path) -> None:
    proc = _cli(str(DEFAULT_SPEC), "--run-dir", str(full_disk / "run"))
    assert proc.returncode == 7
    assert "No space left on device" in one_line(proc.stderr)
    assert not (full_disk / "run" / "run.json").exists()


@pytest.mark.parametrize(
    ("digest", "extra", "expected"),
    [
        (None, (), "not an orchestrator run dir"),
        ("0000000000000000", (), "made by other orchestrator/workers code"),
        ("current", (), "no finished 2-rank continuous reference there"),
        ("current", ("--no-reference",), "--reference-from and --no-reference contradict each other"),
    ],
)
def test_unusable_shared_reference_is_refused(
    tmp_path: Path, digest: str | None, extra: tuple[str, ...], expected: str
) -> None:
    from orchestrator.run.reference import code_digest

    shared = tmp_path / "earlier"
    shared.mkdir()
    if digest is not None:
        (shared / "run.json").write_text(f'{{"code_digest": "{code_digest() if digest == "current" else digest}"}}')
    proc = _cli(str(DEFAULT_SPEC), "--run-dir", str(tmp_path / "run"), "--reference-from", str(shared), *extra)
    assert proc.returncode == 2
    assert expected in one_line(proc.stderr)
    assert not (tmp_path / "run").exists()
