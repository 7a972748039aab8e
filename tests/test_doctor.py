"""The doctor: each resume hazard of ``tests/specs/doctor/`` is flagged, the default spec is not.

The patterns are checked in this process (``workers.doctor.diagnose``, the doctor's own
entry point); the command line (``python -m orchestrator doctor``: exit codes, output)
runs in real subprocesses.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_SPEC, REPO, SPECS, one_line
from workers.doctor import diagnose
from workers.spec_loader import load_spec_module, pick_harness

pytestmark = pytest.mark.timeout(600)

HAZARDS = sorted(p for p in (SPECS / "doctor").glob("*.py") if p.name != "__init__.py")


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "doctor", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_at_least_six_distinct_patterns_have_a_setup() -> None:
    expected = {load_spec_module(path).EXPECTED for path in HAZARDS}
    assert len(expected) >= 6


@pytest.mark.parametrize("spec", HAZARDS, ids=lambda p: p.stem)
def test_each_hazard_is_flagged_alone_with_a_fix(spec: Path) -> None:
    module = load_spec_module(spec)
    findings = diagnose(pick_harness(module, None))
    assert [f.pattern for f in findings] == [module.EXPECTED]
    assert findings[0].fix


def test_default_spec_has_no_findings_even_with_strict() -> None:
    proc = doctor(str(DEFAULT_SPEC), "--strict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing found that would not resume" in proc.stdout
    assert "[" not in proc.stdout and "fix:" not in proc.stdout


def test_findings_are_advice_unless_strict() -> None:
    spec = str(SPECS / "doctor" / "counter_attribute.py")
    advice = doctor(spec)
    assert advice.returncode == 0, advice.stderr
    assert "[state-outside-state-dict]" in advice.stdout and "self.samples_seen" in advice.stdout
    assert "fix: keep it in a buffer" in advice.stdout
    assert doctor(spec, "--strict").returncode == 1


def test_a_bad_spec_exits_2_in_one_line(tmp_path: Path) -> None:
    # Refused by the parent from the source alone, before a child imports torch.
    proc = doctor(str(tmp_path / "missing.py"))
    assert proc.returncode == 2
    assert one_line(proc.stderr) == f"error: spec file not found: {tmp_path / 'missing.py'}"
    ambiguous = doctor("--stop-at", "4", str(SPECS / "two_harnesses.py"), "--strict")
    assert ambiguous.returncode == 2
    assert "choose one with --harness" in one_line(ambiguous.stderr)


MUTANTS = REPO / "harness_specs" / "mutants"


def test_random_draws_in_loader_workers_and_a_counter_attribute_are_flagged_before_training(
    tmp_path: Path,
) -> None:
    # Issue 30's mutants, as a user would have written them: the doctor names both before any run.
    from workers.doctor import build_setup
    from workers.doctor.checks import check_worker_randomness
    from workers.kit import ResumableLoader, WorkerRngState

    noisy = pick_harness(load_spec_module(MUTANTS / "worker_augmentation_noise.py"), None)
    (finding,) = diagnose(noisy)
    assert finding.pattern == "worker-rng-not-saved" and "WorkerRngState" in finding.fix
    setup = build_setup(noisy, tmp_path)
    dataset = setup.train_loader.dataset
    setup.train_loader = ResumableLoader(WorkerRngState(dataset), batch_size=4, seed=1, num_workers=1)
    assert check_worker_randomness(setup) == []  # the kit's fix in place: nothing to say
    counter = diagnose(pick_harness(load_spec_module(MUTANTS / "ema_counter_not_saved.py"), None))
    assert [f.pattern for f in counter] == ["state-outside-state-dict"] and "self.updates" in counter[0].what
