"""Zero code for Hugging Face: ``python -m orchestrator run -- SCRIPT`` on a ``Trainer`` and an Accelerate loop.

``tests/scripts/hf_trainer.py`` is a ``transformers.Trainer`` script as a user writes it (a
tiny GPT-2 from a config, random tokens, ``checkpoint-N`` every 4 steps, resume from
``get_last_checkpoint``); ``tests/scripts/hf_accelerate.py`` an Accelerate loop with
``save_state``/``load_state``. Nothing is downloaded (``HF_HUB_OFFLINE=1``). The plain
hooks (``workers.plain``) record both; the Trainer's callback (``workers.hf``) adds when
``checkpoint-N`` is complete, the epochs and the resume check. Each run serves several
assertions; they go in the background lane.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.exit_codes import ExitCode
from tests.conftest import REPO, Run, assert_nothing_left, background_orchestrator_run

SCRIPTS = Path(__file__).resolve().parent / "scripts"
TRAINER = SCRIPTS / "hf_trainer.py"
ACCELERATE = SCRIPTS / "hf_accelerate.py"
# transformers and accelerate live in their own venv over this environment (its torch and
# stop-and-go): in this one, every Lightning worker of the suite would import transformers.
VENV = Path(os.environ.get("STOP_AND_GO_HF_VENV", REPO / ".venv-hf"))
PYTHON = VENV / "bin" / "python"
if not PYTHON.exists():  # before any run is registered: nothing of this module runs
    pytest.skip(
        f"no Hugging Face venv at {VENV} (run: bash scripts/setup_hf_venv.sh, or set STOP_AND_GO_HF_VENV)",
        allow_module_level=True,
    )


def _run(*argv: str):  # type: ignore[no-untyped-def]
    # The orchestrator of the venv: its torchrun workers are the venv's Python too.
    return lambda out: [str(PYTHON), "-m", "orchestrator", "run", "--run-dir", str(out / "run"), "--quiet", *argv]


# Also aborts at exit after training, as gloo DDP sometimes does: a warning, not a failure.
hf_exact_2 = background_orchestrator_run(
    "hf_exact_2", _run("--nproc-per-node", "2", "--", str(TRAINER), "--abort-at-exit")
)
# The script's own sampler, resumed in the second epoch (24 samples: 6 steps an epoch; the stop
# at step 9 resumes from checkpoint-8), given to go with the script's own flag.
hf_epoch_shuffle = background_orchestrator_run(
    "hf_epoch_shuffle",
    _run(
        *("--nproc-per-node", "1", "--kill-at", "9", "--go-args", "--no-resume --resume_from_checkpoint {checkpoint}"),
        *("--", str(TRAINER), "--sampler", "own", "--samples", "24"),
    ),
)
hf_torn_latest = background_orchestrator_run(
    "hf_torn_latest", _run("--nproc-per-node", "1", "--no-reference", "--kill-during-save", "--", str(TRAINER))
)
hf_no_resume = background_orchestrator_run(
    "hf_no_resume", _run("--nproc-per-node", "1", "--no-reference", "--go-args=--no-resume", "--", str(TRAINER))
)
# One rank, two micro-batches a step: the accumulation window is part of the resume point.
hf_exact_1 = background_orchestrator_run(
    "hf_exact_1", _run("--nproc-per-node", "1", "--", str(TRAINER), "--grad-accum", "2")
)
hf_accelerate = background_orchestrator_run("hf_accelerate", _run("--nproc-per-node", "1", "--", str(ACCELERATE)))


def _metadata(run: Run, step: int, rank: int) -> dict:  # type: ignore[type-arg]
    root = Path(run.report["stops"][0]["metadata_dir"])
    return json.loads((root / "metadata" / f"step{step}" / f"rank{rank}.json").read_text())


def test_a_trainer_script_with_gradient_accumulation_verifies_on_one_rank(hf_exact_1: Run) -> None:
    run = hf_exact_1
    assert run.returncode == ExitCode.VERIFIED, run.stderr + run.stdout[-3000:]
    assert run.report["sentinel"]["resume_point"]["accumulate_grad_batches"] == 2
    assert "resume verified" in run.stdout


def test_a_trainer_script_that_resumes_exactly_verifies_on_two_ranks(hf_exact_2: Run) -> None:
    run = hf_exact_2
    assert run.returncode == ExitCode.VERIFIED, run.stderr + run.stdout[-3000:]
    sentinel = run.report["sentinel"]
    assert sentinel["instrumentation"] == "transformers" and Path(sentinel["checkpoint_path"]).name == "checkpoint-4"
    # The model's safetensors file, the optimizer, the RNG files and trainer_state.json, on rank 0.
    files = {Path(f).name for f in _metadata(run, 4, 0)["files"]}
    assert {"model.safetensors", "optimizer.pt", "rng_state_0.pth", "trainer_state.json"} <= files
    assert {Path(f).name for f in _metadata(run, 4, 1)["files"]} == {"rng_state_1.pth"}
    checks = run.report["verdict"]["resume_checks"]
    checked = {c["metric"] for c in checks}
    assert {"weights_digest", "optimizer_state_digest", "lr_scheduler_state", "rng_torch"} <= checked
    assert {c["rank"] for c in checks} == {0, 1}
    assert run.report["verdict"]["go_vs_reference"]["steps"] == list(range(5, 13))
    # The epoch from the TrainerState (48 samples, 2 ranks: 6 steps an epoch), the accumulation window.
    assert sentinel["resume_point"]["epoch"] == 0 and sentinel["resume_point"]["accumulate_grad_batches"] == 1
    assert "coverage: resumed stop: step 4 (epoch 0, batch 4): mid-epoch" in run.stdout
    assert "resume verified" in run.stdout
    for name in ("go", "continuous"):  # every rank recorded its last step, then aborted at exit
        phase = next(p for p in run.report["phases"] if p["name"] == name)
        assert phase["exit_code"] != 0 and phase["outcome"].startswith("finished; every rank recorded its last step")
        assert f"{name}: warning: every rank recorded its last step" in run.stdout
    assert_nothing_left(run.run_dir)


def test_a_sampler_that_ignores_the_epoch_is_named_first_with_a_trainer_fix(hf_epoch_shuffle: Run) -> None:
    run = hf_epoch_shuffle
    assert run.returncode == ExitCode.MISMATCH, run.stderr + run.stdout[-3000:]
    sentinel = run.report["sentinel"]
    assert (sentinel["stopped_at"], Path(sentinel["checkpoint_path"]).name) == (9, "checkpoint-8")
    go = json.loads((run.run_dir / "results" / "go" / "rank0.json").read_text())
    assert go["final_step"] == 12  # resumed by --resume_from_checkpoint {checkpoint}, trained to the end
    root = run.report["diagnosis"][0]
    assert root["cause_id"] == "hf_epoch_shuffle_not_replayed" and root["step"] == 9, root
    assert "set_epoch" in root["fix"] and "_get_train_sampler" in root["fix"]
    assert "root cause: " in run.stdout and "the Trainer resumed in a later epoch" in run.stdout


def test_a_resume_that_picks_the_torn_checkpoint_n_is_named(hf_torn_latest: Run) -> None:
    # Killed once checkpoint-8/model.safetensors was closed, before trainer_state.json:
    # get_last_checkpoint returns the highest checkpoint-N, the torn one.
    run = hf_torn_latest
    assert run.returncode == ExitCode.GO_FAILED, run.stderr + run.stdout[-3000:]
    marker = json.loads((run.run_dir / "sentinels" / "stop.json").read_text())
    assert Path(marker["path"]).name == "checkpoint-8" and Path(marker["checkpoint_path"]).name == "checkpoint-4"
    assert [Path(f).name for f in marker["files_written"]] == ["model.safetensors"]
    torn = Path(marker["path"])
    assert (torn / "model.safetensors").is_file() and not (torn / "trainer_state.json").exists()
    assert "the checkpoint the stop was killed while writing" in run.stderr and "checkpoint-8" in run.stderr
    assert "that has trainer_state.json" in run.stderr  # the Trainer user's fix
    assert_nothing_left(run.run_dir)


def test_a_go_whose_trainer_starts_at_step_0_fails_at_once_saying_so(hf_no_resume: Run) -> None:
    run = hf_no_resume
    assert run.returncode == ExitCode.GO_FAILED, run.stderr + run.stdout[-3000:]
    assert "trainer.train() started at step 0: it did not resume from the stop's checkpoint" in run.stderr
    assert "checkpoint-4; call trainer.train(resume_from_checkpoint=True)" in run.stderr
    go = json.loads((run.run_dir / "results" / "go" / "rank0.json").read_text())
    assert go["final_step"] is None  # at on_train_begin, before any step
    assert_nothing_left(run.run_dir)


def test_an_accelerate_save_state_loop_verifies(hf_accelerate: Run) -> None:
    run = hf_accelerate
    assert run.returncode == ExitCode.VERIFIED, run.stderr + run.stdout[-3000:]
    sentinel = run.report["sentinel"]
    assert sentinel["instrumentation"] == "plain" and Path(sentinel["checkpoint_path"]).name == "step_4"
    # save_state's safetensors model file is part of the checkpoint, as its torch.save files are.
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl"} <= {
        Path(f).name for f in _metadata(run, 4, 0)["files"]
    }
    assert run.report["verdict"]["go_vs_reference"]["steps"] == list(range(5, 13))
    assert "resume verified" in run.stdout
