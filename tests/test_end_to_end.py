"""The default spec verifies and the broken spec fails, across real torchrun processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import BROKEN_SPEC, DEFAULT_SPEC, Run, assert_nothing_left, run_orchestrator


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    run_dir = tmp_path_factory.mktemp("default") / "run"
    return run_orchestrator(DEFAULT_SPEC, run_dir, "--json-report", str(run_dir.parent / "report.json"))


def test_default_spec_verifies(default_run: Run) -> None:
    assert default_run.returncode == 0, default_run.stderr + default_run.stdout[-3000:]
    assert "verdict: resume verified" in default_run.stdout
    report = default_run.report
    assert report["exit_code"] == 0
    assert report["verdict"]["ok"] is True
    assert [p["name"] for p in report["phases"]] == ["stop", "go", "continuous"]


def test_default_run_killed_stop_after_complete_checkpoint(default_run: Run) -> None:
    report = default_run.report
    sentinel = report["sentinel"]
    assert sentinel["step"] == 2
    assert sentinel["world_size"] == 2
    assert Path(sentinel["checkpoint_path"]).name == "epoch=0-step=2.ckpt"
    stop = report["phases"][0]
    assert stop["kill"]["signal"] == "SIGKILL"
    assert stop["kill"]["survivors"] == []
    # torchrun agent plus two workers, all killed by the orchestrator.
    assert len(stop["kill"]["pids"]) >= 3
    assert stop["exit_code"] == -9
    assert 0 < report["sentinel_to_all_dead_s"] < 30


def test_default_run_compared_every_metric_on_every_rank(default_run: Run) -> None:
    verdict = default_run.report["verdict"]
    checks = verdict["resume_checks"]
    assert {c["rank"] for c in checks} == {0, 1}
    assert {c["metric"] for c in checks} >= {"global_step", "learning_rate", "weights_digest", "consumed_samples"}
    assert all(c["ok"] for c in checks)
    go = verdict["go_vs_reference"]
    assert go["steps"] == list(range(3, 13))
    assert go["compared_values"] > 100
    assert verdict["stop_vs_reference"]["steps"] == [1, 2]


def test_default_run_leaves_logs_and_json_report(default_run: Run) -> None:
    for phase in ("stop", "go", "continuous"):
        log = default_run.run_dir / "logs" / f"{phase}.log"
        assert log.stat().st_size > 0
    # Quiet by default: the workers' lines are in the per-rank logs, not on the terminal.
    assert "[stop r0]" not in default_run.stdout
    assert (default_run.run_dir / "logs" / "stop").is_dir()
    copy = json.loads((default_run.run_dir.parent / "report.json").read_text())
    assert copy == default_run.report


def test_default_run_prewarmed_go_in_its_own_processes(default_run: Run) -> None:
    report = default_run.report
    stop, go = report["phases"][0], report["phases"][1]
    timings = report["timings"]
    assert timings["prewarm"] is True and timings["reference"] == "after go"
    assert go["prewarmed_s"] > 0
    # Fresh processes of their own torchrun: no pid shared, none among the killed ones.
    assert not set(stop["pids"]) & set(go["pids"])
    assert go["agent_pid"] not in stop["kill"]["pids"]
    # Started before stop's kill was confirmed; released only after it.
    killed_at = timings["kill_confirmed_at"]
    assert len(go["results"]) == 2
    assert all(r["started_at"] < killed_at < r["go_ahead_at"] for r in go["results"])
    assert 0 < timings["kill_to_go_first_step_s"] < 60
    assert timings["total_s"] > timings["go_s"] > 0
    assert "timings: stop" in default_run.stdout


def test_default_run_leaves_no_process(default_run: Run) -> None:
    assert_nothing_left(default_run.run_dir)


def test_broken_scheduler_fails_naming_learning_rate(tmp_path: Path) -> None:
    # The reference runs alongside stop and go here (auto does so only with 4 cores a rank).
    run = run_orchestrator(BROKEN_SPEC, tmp_path / "run", "--concurrent-reference", "always")
    assert run.returncode == 1, run.stderr + run.stdout[-3000:]
    assert "learning_rate" in run.stderr
    report = run.report
    assert report["timings"]["reference"] == "concurrent"
    stop, go, continuous = report["phases"]
    # Launched before the stop was killed: it ran alongside, in processes of its own.
    assert continuous["name"] == "continuous" and continuous["prewarmed_s"] is None
    assert continuous["results"][0]["started_at"] < report["timings"]["kill_confirmed_at"]
    assert not set(continuous["pids"]) & (set(stop["pids"]) | set(go["pids"]))
    failures = run.report["verdict"]["failures"]
    assert any("learning_rate" in f and "step 3" in f for f in failures), failures
    assert_nothing_left(run.run_dir)
