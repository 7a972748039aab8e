"""Zero code for plain PyTorch loops: ``python -m orchestrator run -- SCRIPT`` on a DDP script, no Lightning.

``tests/scripts/ddp_train.py`` is written as a user writes it (BioNeMo's native recipes'
shape: ``step_N/checkpoint.pt`` plus a loader file per rank, resume from the highest
``step_*``); the tool's hooks (``workers.plain``) see its steps, batches, losses, saves and
loads. Each run serves several assertions; they go in the background lane.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from orchestrator.exit_codes import ExitCode
from tests.conftest import Run, assert_nothing_left, background_orchestrator_run

DDP = Path(__file__).resolve().parent / "scripts" / "ddp_train.py"
FSDP2 = Path(__file__).resolve().parent / "scripts" / "fsdp2_train.py"


def _run(*argv: str):  # type: ignore[no-untyped-def]
    return lambda out: [sys.executable, "-m", "orchestrator", "run", "--run-dir", str(out / "run"), "--quiet", *argv]


exact_2 = background_orchestrator_run("exact_2", _run("--nproc-per-node", "2", "--", str(DDP)))
# Also aborts at exit after training, as gloo DDP sometimes does: a warning, not a failure;
# and trains through a GradScaler that skips steps (its state saved with the checkpoint).
exact_1_epoch_end = background_orchestrator_run(
    "exact_1_epoch_end",
    _run("--nproc-per-node", "1", "--kill-at", "13", "--", str(DDP), "--abort-at-exit", "--grad-scaler"),
)
fsdp2_dcp = background_orchestrator_run("fsdp2_dcp", _run("--nproc-per-node", "2", "--", str(FSDP2)))
rng_lost = background_orchestrator_run("rng_lost", _run("--nproc-per-node", "1", "--", str(DDP), "--no-save-rng"))
plain_loader = background_orchestrator_run(
    "plain_loader", _run("--nproc-per-node", "1", "--", str(DDP), "--loader", "plain")
)
never_saves = background_orchestrator_run(
    "never_saves", _run("--nproc-per-node", "1", "--no-reference", "--", str(DDP), "--save-every", "100")
)
torn_latest = background_orchestrator_run(
    "torn_latest", _run("--nproc-per-node", "1", "--no-reference", "--kill-during-save", "--", str(DDP))
)
scaler_lost = background_orchestrator_run(
    "scaler_lost",
    _run("--nproc-per-node", "1", "--no-reference", "--", str(DDP), "--grad-scaler", "--no-save-scaler"),
)
# Two bugs the field files, each diagnosed from its evidence: the optimizer's state_dict never
# loaded (the scheduler's is), and one rank's loader state not restored.
optimizer_forgotten = background_orchestrator_run(
    "optimizer_forgotten", _run("--nproc-per-node", "1", "--no-reference", "--", str(DDP), "--forget", "optimizer")
)
loader_rank1_forgotten = background_orchestrator_run(
    "loader_rank1_forgotten",
    _run("--nproc-per-node", "2", "--", str(DDP), "--forget", "loader-rank1"),  # the ledger needs the reference
)
# A newcomer's slip: the tool's own option after `--`, where the script's parser gets it.
misplaced_option = background_orchestrator_run(
    "misplaced_option", _run("--no-reference", "--no-prewarm", "--", str(DDP), "--nproc-per-node", "1")
)
no_resume = background_orchestrator_run(
    "no_resume", _run("--nproc-per-node", "1", "--no-reference", "--go-args=--no-resume", "--", str(DDP))
)


def test_a_ddp_script_that_resumes_exactly_verifies_on_two_ranks(exact_2: Run) -> None:
    run = exact_2
    assert run.returncode == ExitCode.VERIFIED, run.stderr + run.stdout[-3000:]
    report = run.report
    # The first checkpoint: rank 0's step_4/checkpoint.pt and both ranks' loader files.
    sentinel = report["sentinel"]
    assert sentinel["step"] == 4 and Path(sentinel["checkpoint_path"]).name == "step_4"
    assert sentinel["instrumentation"] == "plain"
    checked = {c["metric"] for c in report["verdict"]["resume_checks"]}
    assert {"weights_digest", "optimizer_state_digest", "lr_scheduler_state", "learning_rates", "rng_torch"} <= checked
    assert {c["rank"] for c in report["verdict"]["resume_checks"]} == {0, 1}
    assert report["verdict"]["go_vs_reference"]["steps"] == list(range(5, 17))
    metadata = Path(report["stops"][0]["metadata_dir"])
    saved = {r: json.loads((metadata / "metadata" / "step4" / f"rank{r}.json").read_text()) for r in (0, 1)}
    assert saved[0]["depth"] == saved[1]["depth"] == "full"  # both ranks saved their loader files
    entry = json.loads((metadata / "trajectory" / "go" / "rank1.json").read_text())["entries"][0]
    assert entry["step"] == 5 and entry["metrics"]["epoch"] == 0 and entry["metrics"]["train_loss"] > 0
    assert "resume verified" in run.stdout
    # The default scenario's second stop is not planned for a plain loop, and says so truly.
    assert "): not run for a plain PyTorch loop, whose epochs are not known ahead" in run.stdout
    assert_nothing_left(run.run_dir)


def test_a_resume_at_an_epoch_boundary_with_kill_at_verifies_on_one_rank(exact_1_epoch_end: Run) -> None:
    run = exact_1_epoch_end
    assert run.returncode == ExitCode.VERIFIED, run.stderr + run.stdout[-3000:]
    sentinel = run.report["sentinel"]
    assert (sentinel["stopped_at"], sentinel["step"]) == (13, 12)  # the last checkpoint before the stop
    assert sentinel["resume_point"]["epoch"] == 1 and sentinel["resume_point"]["batch_in_epoch"] == 0
    assert "at an epoch boundary" in run.stdout


def test_steps_a_grad_scaler_skips_are_counted_as_skipped_and_its_scale_is_checked(exact_1_epoch_end: Run) -> None:
    run = exact_1_epoch_end
    assert run.returncode == ExitCode.VERIFIED, run.stderr + run.stdout[-3000:]
    metadata = Path(run.report["stops"][0]["metadata_dir"])
    entries = json.loads((metadata / "trajectory" / "go" / "rank0.json").read_text())["entries"]
    # Every step of the loop is there, skipped or not: go continues at 13 and ends at 16.
    assert [e["step"] for e in entries] == [13, 14, 15, 16]
    stop = json.loads((metadata / "trajectory" / "stop" / "rank0.json").read_text())["entries"]
    skipped = [e["step"] for e in stop if e["metrics"]["optimizer_step_skipped"]]
    assert skipped and skipped[0] == 1  # the scale starts too high: the first step overflows
    # The loss is the script's own, not the scaled one (the scale is ~1e38).
    assert all(0 < e["metrics"]["train_loss"] < 1e3 for e in stop)
    checked = {c["metric"] for c in run.report["verdict"]["resume_checks"]}
    assert "grad_scaler_scale" in checked


def test_a_grad_scaler_left_out_of_the_checkpoint_is_named_with_the_plain_fix(scaler_lost: Run) -> None:
    run = scaler_lost
    assert run.returncode == ExitCode.MISMATCH, run.stderr + run.stdout[-3000:]
    root = run.report["diagnosis"][0]
    assert (root["metric"], root["where"], root["cause_id"]) == ("grad_scaler_scale", "resume", "grad_scaler")
    assert "scaler.load_state_dict()" in root["fix"]
    assert "root cause: grad_scaler_scale at resume" in run.stdout
    # Without a reference the summary says what was not checked.
    assert "no continuous reference (--no-reference): the resume point was checked; the steps after it" in run.stdout


def test_an_fsdp2_script_checkpointed_with_dcp_verifies_on_two_ranks(fsdp2_dcp: Run) -> None:
    run = fsdp2_dcp
    assert run.returncode == ExitCode.VERIFIED, run.stderr + run.stdout[-3000:]
    report = run.report
    assert Path(report["sentinel"]["checkpoint_path"]).name == "step_4"  # the DCP directory
    metadata = Path(report["stops"][0]["metadata_dir"])
    saved = [json.loads((metadata / "metadata" / "step4" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, data in enumerate(saved):  # the DCP save and the rank's own loader file
        assert sorted(Path(f).name for f in data["files"]) == [f"loader_rank_{rank}.pt", "step_4"]
    # Each rank fingerprints its own shards of the weights (DTensor.to_local()): they differ.
    assert saved[0]["metrics"]["weights_digest"] != saved[1]["metrics"]["weights_digest"]
    assert report["verdict"]["go_vs_reference"]["steps"] == list(range(5, 13))


def test_dropout_without_the_rng_in_the_checkpoint_names_the_rng_first(rng_lost: Run) -> None:
    run = rng_lost
    assert run.returncode == ExitCode.MISMATCH, run.stderr + run.stdout[-3000:]
    root = run.report["diagnosis"][0]
    assert (root["metric"], root["where"], root["cause_id"]) == ("rng_torch", "resume", "rng_not_restored")
    assert "torch.get_rng_state()" in root["fix"] and "Callback" not in root["fix"]  # no Lightning advice


def test_a_plain_dataloader_restarts_its_epoch_and_the_data_finding_comes_first(plain_loader: Run) -> None:
    run = plain_loader
    assert run.returncode == ExitCode.MISMATCH, run.stderr + run.stdout[-3000:]
    root = run.report["diagnosis"][0]
    assert root["cause_id"] == "sampler_restart" and root["step"] == 5
    assert "StatefulDataLoader" in root["fix"]
    assert any(p.startswith("data:") for p in run.report["verdict"]["failures"])


def test_a_script_that_saves_no_checkpoint_during_training_exits_10(never_saves: Run) -> None:
    run = never_saves
    assert run.returncode == ExitCode.NO_CHECKPOINT, run.stderr + run.stdout[-3000:]
    assert "training ended at step 16 and it saved no checkpoint" in run.stderr
    assert_nothing_left(run.run_dir)


def test_a_go_that_loads_nothing_fails_at_once_saying_so(no_resume: Run) -> None:
    run = no_resume
    assert run.returncode == ExitCode.GO_FAILED, run.stderr + run.stdout[-3000:]
    assert "started training without loading the stop's checkpoint" in run.stderr
    assert "step_4 (it loaded nothing)" in run.stderr
    go = json.loads((run.run_dir / "results" / "go" / "rank0.json").read_text())
    assert go["final_step"] is None  # it failed at its first batch, not after training
    assert_nothing_left(run.run_dir)


def test_a_latest_checkpoint_logic_that_picks_a_torn_checkpoint_is_named(torn_latest: Run) -> None:
    # Killed once step_8/checkpoint.pt was closed, before step_8/dataloader_rank_0.pt: the script
    # resumes from the highest step_* directory, the torn one.
    run = torn_latest
    assert run.returncode == ExitCode.GO_FAILED, run.stderr + run.stdout[-3000:]
    marker = json.loads((run.run_dir / "sentinels" / "stop.json").read_text())
    assert Path(marker["path"]).name == "step_8" and Path(marker["checkpoint_path"]).name == "step_4"
    assert "the checkpoint the stop was killed while writing" in run.stderr
    assert "step_8" in run.stderr and "completion marker" in run.stderr
    assert_nothing_left(run.run_dir)


def test_a_rank_that_aborts_at_exit_after_its_last_step_is_a_warning(exact_1_epoch_end: Run) -> None:
    run = exact_1_epoch_end
    assert run.returncode == ExitCode.VERIFIED, run.stderr + run.stdout[-3000:]
    for name in ("go", "continuous"):
        phase = next(p for p in run.report["phases"] if p["name"] == name)
        assert phase["exit_code"] != 0 and phase["outcome"].startswith("finished; every rank recorded its last step")
        assert f"{name}: warning: every rank recorded its last step" in run.stdout


def test_a_script_that_rejects_its_arguments_fails_with_the_parsers_own_words(misplaced_option: Run) -> None:
    run = misplaced_option
    assert run.returncode == ExitCode.STOP_FAILED, run.stderr + run.stdout[-3000:]
    assert (
        "the script exited with 2: ddp_train.py: error: unrecognized arguments: --nproc-per-node 1 "
        "(stop-and-go's own options go before `--`, the script's after it)"
    ) in run.stderr
    assert_nothing_left(run.run_dir)


def test_an_optimizer_never_loaded_is_named_though_the_scheduler_was(optimizer_forgotten: Run) -> None:
    run = optimizer_forgotten
    assert run.returncode == ExitCode.MISMATCH, run.stderr + run.stdout[-3000:]
    root = run.report["diagnosis"][0]
    assert (root["metric"], root["where"], root["cause_id"]) == ("learning_rate", "resume", "optimizer_not_loaded")
    assert "lr_scheduler_state is the saved one" in root["because"]
    assert "optimizer.load_state_dict(" in root["fix"]


def test_a_loader_not_restored_on_one_rank_is_named_with_the_ranks(loader_rank1_forgotten: Run) -> None:
    run = loader_rank1_forgotten
    assert run.returncode == ExitCode.MISMATCH, run.stderr + run.stdout[-3000:]
    root = run.report["diagnosis"][0]
    assert (root["rank"], root["cause_id"]) == (1, "loader_not_restored_on_some_ranks")
    assert "only rank 1's data differs" in root["because"] and "rank 0 resumed exactly" in root["because"]
    assert "StatefulDataLoader" not in root["fix"]  # the script has one: the fix is to load rank 1's state
