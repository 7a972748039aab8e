"""The mutant catalog: every mutant fails with exit 1, named by the metric it declares.

One ``python -m orchestrator self-test`` runs the whole catalog (each mutant a real
stop / kill / go / continuous run); each mutant is then its own test, reading that run's
exit code, output and report. The correct default spec's passing run is
``tests/test_end_to_end.py``'s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.judge.causes import DATA
from orchestrator.suite.selftest import DEFAULT_MUTANTS_DIR, Mutant, SelfTestUsageError, discover, read_mutant
from tests.conftest import REPO, assert_nothing_left, background_fixture

# The whole catalog runs in the first test's fixture: allow for it on 2 busy cores.
pytestmark = pytest.mark.timeout(3600)

MUTANTS = discover(DEFAULT_MUTANTS_DIR)


@dataclass
class SelfTestRun:
    returncode: int
    stdout: str
    stderr: str
    run_root: Path

    def summary(self) -> dict[str, Any]:
        return json.loads((self.run_root / "self_test.json").read_text())

    def result(self, name: str) -> dict[str, Any]:
        return next(m for m in self.summary()["mutants"] if m["name"] == name)


def _self_test_command(out: Path) -> list[str]:
    # Two runs at once: one run leaves a core mostly idle (imports, rendezvous, polling).
    # With the control: its continuous reference serves the SHARES_REFERENCE mutants.
    return [sys.executable, "-m", "orchestrator", "self-test", "--jobs", "2", "--run-dir", str(out / "runs")]


# The catalog is the suite's longest run and reads nothing of other tests: it runs in the
# background lane (tests/background.py) and is read here.
self_test = background_fixture(
    "self_test",
    _self_test_command,
    lambda proc, run: SelfTestRun(proc.returncode, proc.stdout, proc.stderr, run.out_dir / "runs"),
    timeout=3500,
)


def test_catalog_has_every_bug_class_of_the_issue() -> None:
    assert len(MUTANTS) >= 12
    assert all(m.bug_class for m in MUTANTS)
    names = {m.name for m in MUTANTS}
    assert {"sampler_restart", "rng_replicated", "grad_scaler_not_restored", "incomplete_checkpoint"} <= names
    assert {m.caught_by for m in MUTANTS} >= {
        "sample_ledger",
        "learning_rate",
        "lr_scheduler_state",
        "global_step",
        "optimizer_state_digest",
        "rng_torch",
        "grad_scaler_scale",
        "val_loss",
        "buffers_digest",
        "grad_accum_micro_batches",
    }


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_fails_with_exit_1_naming_its_metric(self_test: SelfTestRun, mutant: Mutant) -> None:
    result = self_test.result(mutant.name)
    output = (self_test.run_root / f"{mutant.name}.out").read_text()
    assert result["returncode"] == 1, output[-3000:]
    assert "error: resume mismatch" in output
    # The summary's list of differences (capped, root cause first) names the declared metric
    # or sends the reader to report.json for the rest...
    differences = output.split("differences:", 1)[-1]
    assert mutant.caught_by in differences or "more (report.json)" in differences, differences[:3000]
    # ...and so does the report, with a rank and a step.
    report = json.loads((self_test.run_root / mutant.name / "report.json").read_text())
    assert report["exit_code"] == 1
    findings = [f for f in report["verdict"]["findings"] if f["metric"] == mutant.caught_by]
    assert findings, report["verdict"]["failures"]
    assert result["caught"] and {k: v for k, v in result["finding"].items() if k != "cause_id"} == findings[0]
    # Root cause first: the first diagnosis names the mutant's declared cause, with a fix.
    assert mutant.expected_cause, f"{mutant.name} declares no EXPECTED_CAUSE"
    assert report["diagnosis"][0]["cause_id"] == mutant.expected_cause, report["diagnosis"][0]
    assert report["diagnosis"][0]["fix"]
    assert findings[0]["rank"] in (0, 1) and findings[0]["step"] is not None
    assert_nothing_left(self_test.run_root / mutant.name)


def test_self_test_prints_caught_all_with_metric_rank_and_step(self_test: SelfTestRun) -> None:
    assert self_test.returncode == 0, self_test.stdout + self_test.stderr
    total = len(MUTANTS)
    assert f"caught {total}/{total}" in self_test.stdout
    for mutant in MUTANTS:
        finding = self_test.result(mutant.name)["finding"]
        line = next(ln for ln in self_test.stdout.splitlines() if ln.startswith(f"caught   {mutant.name}:"))
        assert f"{mutant.caught_by} on rank {finding['rank']}, first divergent step {finding['step']}" in line


def test_control_verifies_and_serves_the_shared_references(self_test: SelfTestRun) -> None:
    assert self_test.summary()["control_ok"] is True
    assert (self_test.run_root / "references").is_dir()
    sharers = [m for m in MUTANTS if m.shares_reference is not None]
    assert len(sharers) >= 4
    for mutant in MUTANTS:
        report = json.loads((self_test.run_root / mutant.name / "report.json").read_text())
        phases = [p["name"] for p in report["phases"]]
        # A sharer with more ranks than the control (MIN_RANKS) has no reference of its size to share.
        if mutant in sharers and mutant.min_ranks == 1:  # the control's reference, judged all the same
            assert report["timings"]["reference"] == f"shared from {self_test.run_root / 'control'}"
            assert phases in (["stop", "go"], ["stop", "go1", "go"]), phases
            assert report["verdict"]["go_vs_reference"] is not None
        else:
            assert not report["timings"]["reference"].startswith("shared"), mutant.name


def test_each_mutant_ran_with_the_ranks_its_bug_needs(self_test: SelfTestRun) -> None:
    # One worker per phase by default; MIN_RANKS = 2 for per-rank state and for a bug that
    # shows after an epoch boundary (an epoch is 16 steps with one rank, 8 with two).
    assert {m.name for m in MUTANTS if m.min_ranks == 2} == {"rng_replicated", "offset_every_epoch", "offset_per_rank"}
    control = json.loads((self_test.run_root / "control" / "run.json").read_text())
    assert control["nproc_per_node"] == 1
    for mutant in MUTANTS:
        run = json.loads((self_test.run_root / mutant.name / "run.json").read_text())
        assert run["nproc_per_node"] == mutant.min_ranks, mutant.name


def test_a_bad_min_ranks_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('CAUGHT_BY = "rng_torch"\nMIN_RANKS = 0\n')
    with pytest.raises(SelfTestUsageError, match="MIN_RANKS must be at least 1"):
        read_mutant(bad)


def test_sampler_restart_is_diagnosed_as_data_with_cause_and_fix(self_test: SelfTestRun) -> None:
    report = json.loads((self_test.run_root / "sampler_restart" / "report.json").read_text())
    root = report["diagnosis"][0]
    assert root["metric"] in DATA and root["cause_id"] == "sampler_restart", root
    assert "stateful loader" in root["fix"] and root["cause"]
    output = (self_test.run_root / "sampler_restart.out").read_text()
    assert "root cause: " in output and "  cause: " in output and "  fix: " in output


# Issue 30: bug classes whose first diagnosis used to name a wrong cause; each root cause now
# says what evidence it rests on.
ISSUE_30 = {
    "worker_augmentation_noise": ("data_pipeline_rng", "sample ids but different tensors"),
    "offset_per_rank": ("offset_per_rank", "divided by the 2 ranks"),
    "set_epoch_skipped": ("epoch_replay", "in epoch 0 where the reference's is in epoch 1"),
    "ema_counter_not_saved": ("attribute_not_saved", "`self.updates` is 0 after the resume, 2 when saved"),
    "weight_decay_on_load": ("optimizer_hparams_changed", "weight_decay of param group 0: saved 0.01, resumed 0.02"),
    "reseed_after_restore": ("rng_reseeded", "RngStateCallback restored rng_torch to the saved"),
}


@pytest.mark.parametrize("name", sorted(ISSUE_30))
def test_issue_30_mutants_name_their_cause_because_of_the_evidence(self_test: SelfTestRun, name: str) -> None:
    cause_id, evidence = ISSUE_30[name]
    root = json.loads((self_test.run_root / name / "report.json").read_text())["diagnosis"][0]
    assert root["cause_id"] == cause_id and evidence in root["because"], root
    output = (self_test.run_root / f"{name}.out").read_text()
    assert f"  because: {root['because'][:60]}" in output


def test_rng_replicated_is_caught_on_rank_1_only(self_test: SelfTestRun) -> None:
    report = json.loads((self_test.run_root / "rng_replicated" / "report.json").read_text())
    ranks = {f["rank"] for f in report["verdict"]["findings"] if f["metric"] == "rng_torch"}
    assert ranks == {1}


def test_self_test_usage_errors_are_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "self-test", "--only", "no_such_mutant", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown mutant(s): no_such_mutant"
