"""Epoch-bounded runs over a stream: ``max_epochs=3``, no ``max_steps``, a train loader without a length.

Lightning cannot tell such a run's last step or its steps per epoch before training
(``estimated_stepping_batches`` is -1): ``--kill-at``, the default stop and ``go1`` must
work from what the fit loop knows as the run goes (``tests/specs/stream_epochs.py``, one
rank, 4 steps an epoch, 12 steps). Every run is in the background lane.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.judge.coverage import coverage, coverage_lines
from tests.conftest import Run, assert_nothing_left, background_spec_run

SPEC = Path(__file__).resolve().parent / "specs" / "stream_epochs.py"

kill_at_stream_run = background_spec_run(
    "kill_at_stream_run", SPEC, "--kill-at", "6", "--single-stop", "--nproc-per-node", "1", "--quiet"
)
default_stream_run = background_spec_run("default_stream_run", SPEC, "--nproc-per-node", "1", "--quiet")
# Only the stop runs: it trains to the end and finds that it never reached the step.
kill_at_past_stream_run = background_spec_run(
    "kill_at_past_stream_run", SPEC, "--kill-at", "50", "--no-reference", "--no-prewarm", "--nproc-per-node", "1"
)


def test_kill_at_stops_a_stream_run_of_unknown_length(kill_at_stream_run: Run) -> None:
    run = kill_at_stream_run
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    report = run.report
    assert report["sentinel"]["step"] == 6 and report["sentinel"]["stopped_at"] == 6
    assert report["verdict"]["go_vs_reference"]["steps"] == list(range(7, 13))
    (point,) = report["coverage"]["resume_points"]
    # Read from the fit loop at the save: epoch 1, two of its batches done; the rest is not known.
    assert (point["epoch"], point["batch_in_epoch"]) == (1, 2)
    assert point["last_step"] is None and point["steps_per_epoch"] is None
    assert "coverage: resumed stop: step 6 (epoch 1, batch 2)" in run.stdout
    assert "(-1)" not in run.stdout + run.stderr and "-2]" not in run.stdout + run.stderr
    assert_nothing_left(run.run_dir)


def test_default_scenario_stops_at_the_first_checkpoint_and_in_a_later_epoch(default_stream_run: Run) -> None:
    run = default_stream_run
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    report = run.report
    assert [p["name"] for p in report["phases"]] == ["stop", "go1", "go", "continuous"]
    points = {p["label"]: p for p in report["coverage"]["resume_points"]}
    # The first checkpoint (step 2), then go1's first checkpoint saved in a later epoch than
    # the one it resumed in (step 6, epoch 1), though no epoch's length was known up front.
    assert (points["stop"]["step"], points["stop"]["epoch"]) == (2, 0)
    assert (points["go1"]["step"], points["go1"]["epoch"]) == (6, 1)
    assert report["verdict"]["go_vs_reference"]["steps"] == list(range(7, 13))
    # Not known before training: the orchestrator warmed go1 rather than drop it.
    assert (run.run_dir / "outlook" / "stop.json").read_text().count('"later_epoch_checkpoints": null') == 1
    assert_nothing_left(run.run_dir)


def test_kill_at_past_the_end_of_a_stream_run_says_so(kill_at_past_stream_run: Run) -> None:
    run = kill_at_past_stream_run
    assert run.returncode == 2, run.stderr + run.stdout[-3000:]
    assert "--kill-at 50: stop's training ended at step 12, before reaching it" in run.stderr
    assert "the run's last step was not known before training" in run.stderr and "[2, 11]" in run.stderr
    assert_nothing_left(run.run_dir)


def test_coverage_of_a_run_of_unknown_length_names_no_step_it_cannot_know() -> None:
    point = {"step": 6, "epoch": 1, "batch_in_epoch": 2, "batches_per_epoch": None, "steps_per_epoch": None}
    point |= {"accumulate_grad_batches": 1, "val_every_steps": 2, "last_step": None, "later_epoch_checkpoints": None}
    section = coverage([{"label": "stop", "trigger": {"resume_point": point}}])
    options = {m["situation"]: m["option"] for m in section["not_exercised"]}
    assert options["at an epoch boundary"] == "--kill-at STEP (an epoch's last step)"
    assert options["between validations"] == "--kill-at 3" and len(options) == 2
    assert coverage_lines(section)[0].startswith("coverage: resumed stop: step 6 (epoch 1, batch 2): mid-epoch")


def test_coverage_of_a_short_run_names_no_step_past_its_end() -> None:
    # tests/scripts/plain_train.py --max-steps 6 --every 3: validation every 16 steps (an epoch).
    point = {"step": 3, "epoch": 0, "batch_in_epoch": 3, "batches_per_epoch": 16, "steps_per_epoch": 16}
    point |= {"accumulate_grad_batches": 1, "val_every_steps": 16, "last_step": 6, "later_epoch_checkpoints": []}
    section = coverage([{"label": "stop", "trigger": {"resume_point": point}}])
    options = {m["situation"]: m["option"] for m in section["not_exercised"]}
    assert options["right after a validation"] == "validations more often than every 16 steps (the run ends at step 6)"
    assert options["at an epoch boundary"] == "a run of two epochs"
