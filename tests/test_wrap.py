"""Zero-code mode: ``python -m orchestrator run -- SCRIPT`` on unmodified user-style scripts.

The scripts under ``tests/scripts/`` know nothing of stop-and-go; the project's
``lightning.pytorch.callbacks_factory`` entry point instruments their Trainers. One run
serves several assertions (module-scoped fixtures); steps are few.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.run.prewarm import defer_optional
from tests.conftest import REPO, Run, assert_nothing_left, background_fixture, background_orchestrator_run

SCRIPTS = Path(__file__).resolve().parent / "scripts"
PLAIN = SCRIPTS / "plain_train.py"
NEMO_PYTHON = Path(os.environ.get("STOP_AND_GO_NEMO_VENV", REPO / ".venv-nemo")) / "bin" / "python"


def run_script(run_dir: Path, *argv: str, timeout: float = 300) -> Run:
    """``python -m orchestrator run --run-dir RUN_DIR ARGV`` to completion."""
    command = [sys.executable, "-m", "orchestrator", "run", "--run-dir", str(run_dir), "--quiet", *argv]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    return Run(proc.returncode, proc.stdout, proc.stderr, run_dir)


def first_trajectory_entry(metadata_dir: Path, phase: str) -> dict:
    return json.loads((metadata_dir / "trajectory" / phase / "rank0.json").read_text())["entries"][0]


def wrap_command(*argv: str) -> Callable[[Path], list[str]]:
    """The ``python -m orchestrator run ARGV`` command of a background run (its run dir: ``<dir>/run``)."""
    return lambda out: [sys.executable, "-m", "orchestrator", "run", "--run-dir", str(out / "run"), "--quiet", *argv]


# These runs read no other test's files: they go in the background lane (tests/background.py)
# and the tests below judge them. Resumes by itself from checkpoints/last.ckpt: no --go-args.
# On two ranks: one run for these tests and the two-rank one (one epoch of 8 steps per rank).
stateful_run = background_orchestrator_run(
    "stateful_run", wrap_command("--nproc-per-node", "2", "--", str(PLAIN), "--max-steps", "8", "--every", "3")
)


def test_stateful_loader_script_verifies(stateful_run: Run) -> None:
    assert stateful_run.returncode == 0, stateful_run.stderr + stateful_run.stdout[-3000:]
    report = stateful_run.report
    assert report["sentinel"]["step"] == 3
    assert [p["name"] for p in report["phases"]] == ["stop", "go", "continuous"]
    checked = {c["metric"] for c in report["verdict"]["resume_checks"]}
    assert {"weights_digest", "optimizer_state_digest", "lr_scheduler_state", "epoch", "learning_rates"} <= checked
    assert report["verdict"]["go_vs_reference"]["steps"] == list(range(4, 9))
    # One epoch: stop's train start said no later-epoch checkpoint lies ahead, so the default
    # scenario's go1 never runs; with fewer cores than ranks to warm it, it never started.
    outlook = json.loads((stateful_run.run_dir / "outlook" / "stop.json").read_text())
    assert outlook["later_epoch_checkpoints"] == []
    if defer_optional(SimpleNamespace(nproc_per_node=2, go_nproc_per_node=None)):
        assert not (stateful_run.run_dir / "logs" / "go1.log").exists()
        assert not (stateful_run.run_dir / "results" / "go1").exists()
    assert_nothing_left(stateful_run.run_dir)


def test_phases_run_in_their_own_directories(stateful_run: Run) -> None:
    run_dir = stateful_run.run_dir
    checkpoint = Path(stateful_run.report["sentinel"]["checkpoint_path"])
    assert checkpoint.parent == run_dir / "harness" / "workdir" / "checkpoints"
    # The reference trained from scratch in its own directory: it never saw stop's files.
    reference = run_dir / "reference" / "workdir" / "checkpoints"
    assert sorted(p.name for p in reference.glob("*.ckpt"))[-1] == "last.ckpt"
    assert first_trajectory_entry(run_dir / "reference" / "stop_and_go", "continuous")["step"] == 1


def test_every_logged_metric_and_batch_is_recorded(stateful_run: Run) -> None:
    metrics = first_trajectory_entry(stateful_run.run_dir / "harness" / "stop_and_go", "stop")["metrics"]
    assert "logged/train/mse" in metrics
    assert metrics["train_loss"] == pytest.approx(metrics["logged/train/mse"])
    assert {"epoch", "learning_rate", "weights_digest", "batch_hash"} <= set(metrics)
    assert not any(name.startswith("rng_") for name in metrics)  # Lightning saves no RNG: --check-rng


def test_stateful_loader_script_verifies_on_two_ranks(stateful_run: Run) -> None:
    assert stateful_run.returncode == 0, stateful_run.stderr + stateful_run.stdout[-3000:]
    assert {c["rank"] for c in stateful_run.report["verdict"]["resume_checks"]} == {0, 1}


# An ordinary trainer.fit(model, dm) with the default ModelCheckpoint directory and no ckpt_path:
# go resumes it from the stop's checkpoint itself, with no --go-args.
datamodule_run = background_orchestrator_run(
    "datamodule_run", wrap_command("--nproc-per-node", "1", "--", str(SCRIPTS / "datamodule_train.py"))
)


def test_script_that_does_not_resume_is_resumed_from_the_stop_checkpoint(datamodule_run: Run) -> None:
    run = datamodule_run
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    checkpoint = run.report["sentinel"]["checkpoint_path"]
    assert checkpoint.endswith("lightning_logs/version_0/checkpoints/epoch=0-step=3.ckpt")
    notice = f"[orchestrator] go: the script's fit got no ckpt_path; resumed it from the stop's checkpoint {checkpoint}"
    assert [line for line in run.stdout.splitlines() if "resumed it from" in line] == [notice]
    assert notice.removeprefix("[orchestrator] go: ") in (run.run_dir / "logs" / "go.log").read_text()
    assert run.report["verdict"]["go_vs_reference"]["steps"] == list(range(4, 9))
    assert_nothing_left(run.run_dir)


# --nnodes 2: two agents joined by a c10d rendezvous, one rank each, as on two nodes.
two_agents_run = background_orchestrator_run(
    "two_agents_run",
    wrap_command("--nnodes", "2", "--nproc-per-node", "1", "--no-reference", "--", str(PLAIN), "--max-steps", "6",
                 "--every", "3"),
)  # fmt: skip


def test_script_runs_on_two_torchrun_agents(two_agents_run: Run) -> None:
    run = two_agents_run
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    assert {c["rank"] for c in run.report["verdict"]["resume_checks"]} == {0, 1}
    stop_command = run.report["phases"][0]["command"]
    assert "--rdzv-backend" in stop_command and "--standalone" not in stop_command
    assert_nothing_left(run.run_dir)


# LightningCLI's default Trainer (num_nodes=1) under --nnodes 2: two independent runs, not one.
single_node_script_run = background_orchestrator_run(
    "single_node_script_run",
    wrap_command("--nnodes", "2", "--nproc-per-node", "1", "--no-reference", "--", str(SCRIPTS / "cli_boring.py"),
                 "fit", "--trainer.max_steps=4", "--trainer.logger=false"),
)  # fmt: skip


def test_single_node_script_under_two_agents_is_refused(single_node_script_run: Run) -> None:
    run = single_node_script_run
    assert run.returncode == 3, run.stderr + run.stdout[-3000:]
    assert "torchrun started 2 ranks (2 node(s) x 1), but the script's Trainer runs 1" in run.stderr
    assert "num_nodes=int(os.environ['WORLD_SIZE'])" in run.stderr
    assert_nothing_left(run.run_dir)


# Long enough for the script to be running (Lightning imported) when the timeout comes, on
# a busy machine too; it mostly waits (idle in the background lane).
HANG_TIMEOUT_S = 40
hanging_script_run = background_orchestrator_run(
    "hanging_script_run",
    wrap_command(
        "--nproc-per-node", "1", "--timeout", str(HANG_TIMEOUT_S), "--no-prewarm", "--no-reference", "--",
        str(SCRIPTS / "hang_before_training.py"),
    ),
    idle=True,
)  # fmt: skip


def test_hanging_script_times_out_with_its_stacks(hanging_script_run: Run) -> None:
    run = hanging_script_run
    assert run.returncode == 5, run.stderr
    assert f"no sentinel within {HANG_TIMEOUT_S}s" in run.stderr and "stacks in" in run.stderr
    # The rank dumped its Python stacks before the kill: they name the script's frame.
    (dump,) = run.report["stack_dumps"]
    assert "in wait_for_a_peer_that_never_comes" in Path(dump).read_text()
    (result,) = run.report["phases"][0]["results"]
    assert result["harness"] == "script hang_before_training.py" and result["started_at"] is not None
    assert_nothing_left(run.run_dir)


plain_loader_run = background_orchestrator_run(
    "plain_loader_run", wrap_command("--nproc-per-node", "1", "--", str(PLAIN), "--loader", "plain")
)


def test_plain_shuffled_dataloader_is_a_data_mismatch(plain_loader_run: Run) -> None:
    run = plain_loader_run
    assert run.returncode == 1, run.stderr + run.stdout[-3000:]
    first = run.report["verdict"]["failures"][0]
    assert "batch" in first or "sample" in first, first
    assert_nothing_left(run.run_dir)


sched_bug_run = background_orchestrator_run(
    "sched_bug_run", wrap_command("--nproc-per-node", "1", "--", str(SCRIPTS / "sched_bug.py"))
)


def test_scheduler_left_out_of_the_checkpoint_is_named(sched_bug_run: Run) -> None:
    run = sched_bug_run
    assert run.returncode == 1, run.stderr + run.stdout[-3000:]
    first = run.report["verdict"]["failures"][0]
    assert "learning_rate" in first, first
    assert_nothing_left(run.run_dir)


epoch_checkpoints_run = background_orchestrator_run(
    "epoch_checkpoints_run", wrap_command("--nproc-per-node", "1", "--no-prewarm", "--", str(PLAIN), "--every", "0")
)


def test_script_without_step_checkpoints_fails_fast(epoch_checkpoints_run: Run) -> None:
    # One checkpoint per epoch, and training ends (step 8) inside the first epoch (32 batches).
    run = epoch_checkpoints_run
    assert run.returncode == 10, run.stderr + run.stdout[-3000:]
    assert "every_n_epochs=1" in run.stderr
    assert "--checkpoint-every K" in run.stderr
    phases = {p["name"]: p["outcome"] for p in run.report["phases"]}
    assert phases["stop"] == "died before the sentinel" and "continuous" not in phases
    assert_nothing_left(run.run_dir)


# What Lightning 2.6 really does with this unmodified script: go resumes from the stop's
# epoch-end checkpoint (saved in on_train_epoch_end) and the resume point matches, but at
# the first step after it go's StepLR is one step ahead and its epoch one behind.
lightning_cli_run = background_orchestrator_run(
    "lightning_cli_run",
    wrap_command(
        "--nproc-per-node",
        "1",
        "--go-args",
        # LightningCLI will not overwrite the config.yaml stop saved: go logs to its own directory.
        "--trainer.default_root_dir {phase_dir}/go --ckpt_path {checkpoint}",
        "--",
        str(SCRIPTS / "cli_boring.py"),
        "fit",
        "--seed_everything=1",
        "--trainer.max_steps=6",
        "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=0",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
    ),
)


def test_lightning_cli_script_resumes_with_go_args(lightning_cli_run: Run) -> None:
    run = lightning_cli_run
    assert run.returncode == 1, run.stderr + run.stdout[-3000:]
    report = run.report
    assert report["sentinel"]["step"] == 3
    go = next(p for p in report["phases"] if p["name"] == "go")
    assert go["command"][-2:] == ["--ckpt_path", "{checkpoint}"]  # filled in by the go worker
    checks = report["verdict"]["resume_checks"]
    assert checks and all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    failures = "\n".join(report["verdict"]["failures"])
    assert "lr_scheduler_state (rank 0, step 4)" in failures and "epoch (rank 0, step 4)" in failures
    assert_nothing_left(run.run_dir)


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    for argv, needle in (
        ([], "needs the script after --"),
        (["--", str(tmp_path / "missing.py")], "script not found"),
        (["--calibrate", "--", str(PLAIN)], "does not apply"),
        (["--", str(PLAIN), "--resume", "{checkpoint}"], "belongs in --go-args"),
    ):
        run = run_script(tmp_path / "run", *argv, timeout=60)
        assert run.returncode == 2, (argv, run.stderr)
        assert needle in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


FACTORY_CHECK = """
import json, os, sys
import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
trainer_cls = pl.Trainer
if sys.argv[1] == "nemo":
    from nemo import lightning as nl
    trainer_cls = nl.Trainer
names = lambda t: sorted(type(c).__name__ for c in t.callbacks)
plain = trainer_cls(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
os.environ["STOP_AND_GO_WRAP"] = json.dumps(
    {"label": "stop", "mode": "stop", "metadata_dir": sys.argv[2], "ckpt_dir": sys.argv[2], "checkpoint_every": 3}
)
wrapped = trainer_cls(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
every = [c._every_n_train_steps for c in wrapped.callbacks if isinstance(c, ModelCheckpoint)]
print(json.dumps({"plain": names(plain), "wrapped": names(wrapped), "every": every}))
"""


def _factory_check(name: str, python: Path, trainer: str) -> Any:
    """A fixture ``name``: what FACTORY_CHECK printed, run by ``python`` in the background lane.

    One interpreter each, importing Lightning (or NeMo).
    """
    command = lambda out: [str(python), "-c", FACTORY_CHECK, trainer, str(out)]  # noqa: E731

    def found(proc: subprocess.CompletedProcess[str], _: object) -> dict:
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return background_fixture(name, command, found, 180, env={"PYTHONPATH": str(REPO)}, when=python.exists())


lightning_factory = _factory_check("lightning_factory", Path(sys.executable), "lightning")
nemo_factory = _factory_check("nemo_factory", NEMO_PYTHON, "nemo")


def test_entry_point_adds_callbacks_only_when_asked(lightning_factory: dict) -> None:
    found = lightning_factory
    assert "WrapStopCallback" not in found["plain"]
    assert {"WrapStopCallback", "WrapTrajectoryCallback", "MetadataSaveCallback"} <= set(found["wrapped"])
    assert found["every"] == [3]  # --checkpoint-every 3, despite enable_checkpointing=False


@pytest.mark.skipif(not NEMO_PYTHON.exists(), reason=f"no NeMo venv at {NEMO_PYTHON.parent.parent}")
def test_entry_point_loads_into_nemo_trainer(nemo_factory: dict) -> None:
    found = nemo_factory
    assert "WrapStopCallback" not in found["plain"]
    assert "WrapStopCallback" in found["wrapped"]


def test_a_suite_entry_can_be_a_command_line(tmp_path: Path) -> None:
    from orchestrator.suite.config import SuiteError, load_suite

    suite = tmp_path / "suite.toml"
    suite.write_text(
        f'specs = [{{ command = ["{PLAIN}", "--every", "3"], go_args = "--resume {{checkpoint}}", name = "plain" }}]\n'
        '[[scenario]]\nname = "term"\nkill_signal = "TERM"\n'
    )
    (entry,) = load_suite(suite).entries
    assert entry.name == "plain-term"
    args = entry.orchestrator_args(tmp_path / "run")
    assert args[0] == "run" and args[args.index("--go-args") + 1] == "--resume {checkpoint}"
    assert args[args.index("--") + 1 :] == [str(PLAIN), "--every", "3"]
    assert "--kill-signal" in args[: args.index("--")]
    suite.write_text("specs = [{ command = [] }]\n")
    with pytest.raises(SuiteError, match="command = \\[SCRIPT"):
        load_suite(suite)


@pytest.mark.gpu
@pytest.mark.skipif(not NEMO_PYTHON.exists(), reason=f"no NeMo venv at {NEMO_PYTHON.parent.parent}")
@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="MegatronStrategy needs CUDA")
def test_nemo_recipe_verifies_in_wrap_mode(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = ["run", "--run-dir", str(run_dir), "--nproc-per-node", "1", "--quiet", "--"]
    proc = subprocess.run(
        [str(NEMO_PYTHON), "-m", "orchestrator", *command, str(SCRIPTS / "nemo_tiny_gpt.py")],
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((run_dir / "report.json").read_text())
    # NeMo's checkpoint is a directory (weights/ and context/), vetted by the nemo2 backend.
    assert Path(report["sentinel"]["checkpoint_path"]).is_dir()
    assert_nothing_left(run_dir)
