"""``--calibrate`` measures the noise floor; its tolerances pass the correct spec and still catch a mutant.

Also: a tolerance override (``--tolerances``) is honoured, at the resume point and in the
trajectory, and without it the same noisy metric fails with exit 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.judge.compare import DEFAULT_ATOL, DEFAULT_RTOL
from orchestrator.run.calibrate import SAFETY, load_tolerances, measure_noise
from tests.conftest import REPO, SPECS, Run, assert_nothing_left, run_orchestrator

pytestmark = pytest.mark.timeout(900)

NOISY_SPEC = SPECS / "noisy_metric.py"
MUTANT = REPO / "harness_specs" / "mutants" / "scheduler_not_restored.py"


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, dict]:
    run_dir = tmp_path_factory.mktemp("calibrate") / "run"
    run = run_orchestrator(NOISY_SPEC, run_dir, "--calibrate", "--quiet")
    data = json.loads((run_dir / "calibration.json").read_text()) if (run_dir / "calibration.json").exists() else {}
    return run, data


def test_calibrate_measures_noise_and_writes_tolerances(calibration: tuple[Run, dict]) -> None:
    run, data = calibration
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    assert data["steps"] == 12 and data["ranks"] == 2
    jitter = data["noise"]["jitter"]
    assert jitter["kind"] == "float" and jitter["differing"] > 0
    assert DEFAULT_RTOL < jitter["max_rel"] <= 2.1e-4
    rtol, _ = data["tolerances"]["jitter"]
    assert rtol == pytest.approx(SAFETY * jitter["max_rel"])
    # Bit-identical floats keep the defaults; ints and digests stay exact.
    assert data["tolerances"]["learning_rate"] == [DEFAULT_RTOL, DEFAULT_ATOL]
    assert data["noise"]["weights_digest"]["kind"] == "exact"
    assert "weights_digest" not in data["tolerances"]
    assert data["nondeterministic"] == []
    # Printed for pinning, and the two runs were real and are gone.
    assert "'jitter': (" in run.stdout and "metric_tolerances" in run.stdout
    for n in (1, 2):
        assert (run.run_dir / "calibration" / f"run{n}" / "logs" / "continuous.log").stat().st_size > 0


def test_noise_beyond_the_default_tolerance_is_a_nondeterministic_spec(tmp_path: Path) -> None:
    # Stop already differs from the reference before its stop: exit 9, not a resume mismatch.
    run = run_orchestrator(NOISY_SPEC, tmp_path / "run", "--quiet", "--single-stop", "--nproc-per-node", "1")
    assert run.returncode == 9, run.stderr + run.stdout[-3000:]
    assert "jitter" in run.stderr and "not deterministic" in run.stderr
    failures = run.report["verdict"]["failures"]
    assert len(failures) == 1 and "after resume" not in failures[0]  # go's differences are not listed
    (diagnosis,) = run.report["diagnosis"]
    assert diagnosis["cause_id"] == "nondeterministic" and diagnosis["metric"] == "jitter"
    assert "unseeded" in run.stdout or "seed" in diagnosis["fix"]
    assert_nothing_left(run.run_dir)


def test_calibrated_tolerances_pass_the_correct_spec(calibration: tuple[Run, dict], tmp_path: Path) -> None:
    run, _ = calibration
    # Tolerances measured on 2 ranks, applied per metric to a 1-rank run.
    extra = ("--quiet", "--single-stop", "--nproc-per-node", "1")
    pinned = run_orchestrator(
        NOISY_SPEC, tmp_path / "run", *extra, "--tolerances", str(run.run_dir / "calibration.json")
    )
    assert pinned.returncode == 0, pinned.stderr + pinned.stdout[-3000:]
    checks = [c for c in pinned.report["verdict"]["resume_checks"] if c["metric"] == "jitter"]
    assert checks and all(c["ok"] for c in checks)


def test_calibrated_tolerances_still_catch_a_mutant(calibration: tuple[Run, dict], tmp_path: Path) -> None:
    run, _ = calibration
    extra = ("--quiet", "--single-stop", "--nproc-per-node", "1", "--tolerances", str(run.run_dir / "calibration.json"))
    caught = run_orchestrator(MUTANT, tmp_path / "run", *extra)
    assert caught.returncode == 1, caught.stderr + caught.stdout[-3000:]
    assert "learning_rate" in caught.stderr


def test_measure_noise_flags_an_exact_metric_that_differs() -> None:
    first = {0: [{"step": 1, "metrics": {"digest": "aa", "loss": 1.0, "ids": [1, 2]}}]}
    second = {0: [{"step": 1, "metrics": {"digest": "bb", "loss": 1.0 + 1e-9, "ids": [1, 2]}}]}
    calibration = measure_noise(first, second)
    assert [n.metric for n in calibration.nondeterministic] == ["digest"]
    assert calibration.noise["ids"].deterministic and calibration.noise["ids"].kind == "exact"
    assert calibration.noise["loss"].max_abs == pytest.approx(1e-9)
    assert calibration.tolerances == {"loss": [DEFAULT_RTOL, pytest.approx(1e-8)]}


def test_bad_tolerance_files_are_usage_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"loss": [1e-3]}))
    with pytest.raises(ValueError, match="rtol, atol"):
        load_tolerances(bad)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            str(NOISY_SPEC),
            "--tolerances",
            str(bad),
            "--run-dir",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "rtol, atol" in proc.stderr
