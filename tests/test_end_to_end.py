"""The default spec verifies and the broken spec fails, across real torchrun processes.

The default scenario stops twice (the default spec spans two epochs): ``stop`` at the first
checkpoint (step 2), ``go1`` at the first checkpoint of epoch 1 (step 10), then ``go``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from orchestrator.run.prewarm import defer_optional
from tests.conftest import ReportedRun, Run, assert_nothing_left


def test_default_spec_verifies(default_run: Run) -> None:
    assert default_run.returncode == 0, default_run.stderr + default_run.stdout[-3000:]
    assert "verdict: resume verified" in default_run.stdout
    report = default_run.report
    assert report["exit_code"] == 0
    assert report["verdict"]["ok"] is True
    assert [p["name"] for p in report["phases"]] == ["stop", "go1", "go", "continuous"]
    assert [(r["label"], r["resumed_step"]) for r in report["verdict"]["resumes"]] == [("go1", 2), ("go", 10)]


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
    # go1 stopped too, at the first checkpoint of the next epoch, killed the same way.
    go1 = report["phases"][1]
    assert go1["exit_code"] == -9 and go1["kill"]["survivors"] == []
    assert [(s["label"], s["trigger"]["step"]) for s in report["stops"]] == [("stop", 2), ("go1", 10)]


def test_default_run_compared_every_metric_on_every_rank(default_run: Run) -> None:
    verdict = default_run.report["verdict"]
    checks = verdict["resume_checks"]
    assert {c["rank"] for c in checks} == {0, 1}
    assert {c["metric"] for c in checks} >= {"global_step", "learning_rate", "weights_digest", "consumed_samples"}
    assert {c["step"] for c in checks} == {2, 10}
    assert all(c["ok"] for c in checks)
    trajectories = verdict["trajectories"]
    assert trajectories["stop"]["steps"] == [1, 2]
    assert trajectories["go1"]["steps"] == list(range(3, 11))
    assert trajectories["go"]["steps"] == [11, 12]
    assert trajectories["go1"]["compared_values"] > 100
    assert verdict["go_vs_reference"] == trajectories["go"]
    assert verdict["stop_vs_reference"]["steps"] == [1, 2]


def test_default_run_leaves_logs_and_json_report(default_run: Run) -> None:
    for phase in ("stop", "go1", "go", "continuous"):
        log = default_run.run_dir / "logs" / f"{phase}.log"
        assert log.stat().st_size > 0
    # Quiet by default: the workers' lines are in the per-rank logs, not on the terminal.
    assert "[stop r0]" not in default_run.stdout
    assert (default_run.run_dir / "logs" / "stop").is_dir()
    copy = json.loads((default_run.run_dir.parent / "report.json").read_text())
    assert copy == default_run.report


def test_default_run_prewarmed_go_in_its_own_processes(default_run: Run) -> None:
    report = default_run.report
    stop, go1, go = report["phases"][:3]
    timings = report["timings"]
    assert timings["prewarm"] is True and timings["reference"] == "after go"
    assert go1["prewarmed_s"] > 0 and go["prewarmed_s"] > 0
    # Fresh processes of their own torchrun: no pid shared, none among the killed ones.
    for before, after in ((stop, go1), (go1, go)):
        assert not set(before["pids"]) & set(after["pids"])
        assert after["agent_pid"] not in before["kill"]["pids"]
    # go warmed while go1 ran; released only after go1's kill was confirmed (the last kill).
    killed_at = timings["kill_confirmed_at"]
    assert len(go["results"]) == 2
    go1_released = min(r["go_ahead_at"] for r in go1["results"])
    assert all(r["started_at"] < go1_released for r in go["results"])
    assert all(r["go_ahead_at"] > killed_at for r in go["results"])
    assert 0 < timings["kill_to_go_first_step_s"] < 60
    assert timings["total_s"] > timings["go_s"] > 0
    assert "timings: stop" in default_run.stdout
    # At its train start stop said that a checkpoint of a later epoch lies ahead (step 10),
    # so go1 can run; on a machine with fewer cores than stop's, go's and go1's ranks, go1
    # started warming only then (where it cannot run, it is never started: test_wrap).
    outlook = default_run.run_dir / "outlook" / "stop.json"
    assert json.loads(outlook.read_text())["later_epoch_checkpoints"] == [10]
    if defer_optional(SimpleNamespace(nproc_per_node=2, go_nproc_per_node=None)):
        assert all(r["started_at"] >= outlook.stat().st_mtime - 0.05 for r in go1["results"])


def test_default_run_resumes_after_an_epoch_boundary(default_run: Run) -> None:
    report = default_run.report
    coverage = report["coverage"]
    points = {p["label"]: p for p in coverage["resume_points"]}
    assert points["stop"]["step"] == 2 and points["stop"]["epoch"] == 0
    # go1 stopped at the first checkpoint of epoch 1 (8 steps per epoch, one every 2).
    assert points["go1"]["step"] == 10 and points["go1"]["epoch"] == 1
    assert points["go1"]["batches_per_epoch"] == 8 and points["go1"]["accumulate_grad_batches"] == 1
    assert {"mid-epoch", "after an epoch boundary"} <= set(coverage["exercised"])
    missing = {m["situation"]: m["option"] for m in coverage["not_exercised"]}
    assert missing["at an epoch boundary"] == "--kill-at 8"
    assert "after an epoch boundary" not in missing
    assert "coverage: resumed stop: step 2" in default_run.stdout


def test_default_run_is_quiet_and_writes_nothing_outside_the_run_dir(default_run: Run, default_cwd: Path) -> None:
    assert len(default_run.stdout.splitlines()) <= 40, default_run.stdout
    assert "[stop r" not in default_run.stdout and "\x1b[" not in default_run.stdout
    assert list(default_cwd.iterdir()) == []  # no lightning_logs/ or anything else
    assert (default_run.run_dir / "logs" / "stop").is_dir()  # the workers' per-rank logs


def test_default_run_leaves_no_process(default_run: Run) -> None:
    assert_nothing_left(default_run.run_dir)


def test_broken_scheduler_fails_naming_learning_rate(broken_reported_run: ReportedRun) -> None:
    # The reference ran alongside stop and go (--concurrent-reference always).
    run = broken_reported_run.run
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
