"""The ``megatron`` backend on CPU: the spec verifies, its mutants are caught, torn saves are
refused, and a TP=2 checkpoint resumes resharded on TP=1.

Every run is a real orchestrator run (torchrun, gloo, megatron-core's dist_checkpointing
with the async writer, SIGKILL). Skipped where megatron-core is not installed (the
``megatron`` extra).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Run, assert_nothing_left, background_fixture, run_orchestrator

MEGATRON_INSTALLED = (
    importlib.util.find_spec("megatron") is not None and importlib.util.find_spec("megatron.core") is not None
)

pytestmark = [
    pytest.mark.skipif(
        not MEGATRON_INSTALLED,
        reason="megatron-core is not installed (pip install -e '.[megatron]')",
    ),
    pytest.mark.timeout(1800),
]

SPEC = REPO / "harness_specs" / "megatron_gpt_tiny.py"
RESHARD_SPEC = REPO / "harness_specs" / "megatron_gpt_reshard.py"
MUTANTS_DIR = REPO / "harness_specs" / "megatron_mutants"
MUTANTS = {
    "optimizer_state_not_saved": "optimizer_state_digest",
    "rng_tracker_not_per_rank": "megatron_rng_tracker",
    "sampler_offset_lost": "sample_ledger",
}


@pytest.fixture(scope="module")
def verified_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One plain run of the spec: stop at the first checkpoint, kill, go, continuous (``--single-stop``)."""
    run_dir = tmp_path_factory.mktemp("megatron") / "run"
    return run_orchestrator(SPEC, run_dir, "--single-stop", "--quiet", timeout=900)


def checkpoint_dir(run: Run) -> Path:
    return run.run_dir / "harness" / "megatron_gpt_tiny" / "checkpoints"


def test_spec_verifies_with_sharded_async_checkpoints(verified_run: Run) -> None:
    run = verified_run
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    assert "verdict: resume verified" in run.stdout
    report = run.report
    assert report["harness"] == "MegatronGPTTinyHarness"
    resume = report["verdict"]["resumes"][0]
    assert resume["resumed_step"] == 2
    assert Path(resume["checkpoint"]).name == "last"
    # The per-rank tracker metric was compared on both ranks, and the ranks' streams differ.
    checks = {
        (c["rank"], c["metric"]): c for c in report["verdict"]["resume_checks"] if c["metric"] == "megatron_rng_tracker"
    }
    assert set(checks) == {(0, "megatron_rng_tracker"), (1, "megatron_rng_tracker")}
    assert checks[(0, "megatron_rng_tracker")]["expected"] != checks[(1, "megatron_rng_tracker")]["expected"]
    # Every checkpoint is a torch_dist directory with a shard from every rank and a marker.
    last = checkpoint_dir(run) / "last"
    marker = json.loads((last / "stop_and_go_complete.json").read_text())
    assert marker["step"] == 12 and marker["format"] == "torch_dist" and marker["world_size"] == 2
    assert {name.split("_")[2] for name in marker["files"] if name.endswith(".distcp")} == {"0", "1"}
    assert_nothing_left(run.run_dir)


def test_kill_during_async_save_resumes_from_the_previous_complete_checkpoint(tmp_path: Path) -> None:
    # The resume-point check proves what go resumed from; the reference adds nothing here.
    run = run_orchestrator(SPEC, tmp_path / "run", "--kill-during-save", "--no-reference", "--quiet", timeout=900)
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    trigger = run.report["stops"][0]["trigger"]
    assert Path(trigger["path"]).name == "last"
    assert trigger["step"] == 4
    assert 0 < trigger["bytes_written"] < trigger["bytes"]
    resume = run.report["verdict"]["resumes"][0]
    # ``last`` of step 4 was being written when the kill came: go skipped it.
    assert resume["resumed_step"] == 4
    assert Path(resume["checkpoint"]).name == "epoch=0-step=4"
    go_log = (run.run_dir / "logs" / "go.log").read_text()
    assert "skipping a checkpoint that cannot be resumed from" in go_log
    assert "last is torn (no stop_and_go_complete.json" in go_log
    assert_nothing_left(run.run_dir)


def test_checkpoint_step_refuses_a_dir_without_marker_or_with_a_truncated_shard(
    verified_run: Run, tmp_path: Path
) -> None:
    from workers.backends.base import IncompleteCheckpointError, TornCheckpointError
    from workers.backends.megatron.backend import MegatronBackend

    assert verified_run.returncode == 0, verified_run.stdout[-2000:]
    backend = MegatronBackend()
    source = checkpoint_dir(verified_run) / "epoch=0-step=4"
    assert backend.checkpoint_step(source) == 4

    complete = tmp_path / "checkpoints" / "epoch=0-step=4"
    shutil.copytree(source, complete)
    assert backend.checkpoint_step(complete) == 4
    backend.verify_complete(complete, 4)
    with pytest.raises(IncompleteCheckpointError, match="holds step 4, expected 6"):
        backend.verify_complete(complete, 6)

    no_marker = tmp_path / "checkpoints" / "last"
    shutil.copytree(source, no_marker)
    (no_marker / "stop_and_go_complete.json").unlink()
    with pytest.raises(IncompleteCheckpointError, match=re.escape("is torn (no stop_and_go_complete.json")):
        backend.checkpoint_step(no_marker)

    truncated = tmp_path / "checkpoints" / "epoch=0-step=6"
    shutil.copytree(source, truncated)
    shard = sorted(truncated.glob("*.distcp"))[-1]
    size = shard.stat().st_size
    with open(shard, "r+b") as handle:
        handle.truncate(size // 2)
    expected = f"{shard.name} has {size // 2} bytes, its marker says {size}"
    with pytest.raises(IncompleteCheckpointError, match=re.escape(expected)):
        backend.checkpoint_step(truncated)

    missing = tmp_path / "checkpoints" / "epoch=0-step=8"
    shutil.copytree(source, missing)
    (missing / "metadata.json").unlink()
    with pytest.raises(IncompleteCheckpointError, match=re.escape("(metadata.json is missing)")):
        backend.checkpoint_step(missing)

    # The resume choice: ``last`` first, then by step; torn ones skipped, named.
    assert [p.name for p in backend.candidates(tmp_path / "checkpoints")] == [
        "last",
        "epoch=0-step=8",
        "epoch=0-step=6",
        "epoch=0-step=4",
    ]
    path, step, skipped = backend.newest_complete_checkpoint(tmp_path / "checkpoints")
    assert (path, step) == (complete, 4)
    assert len(skipped) == 3
    shutil.rmtree(complete)
    with pytest.raises(TornCheckpointError, match=r"^torn checkpoint: no complete checkpoint in"):
        backend.newest_complete_checkpoint(tmp_path / "checkpoints")


def _mutants_command(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "orchestrator",
        "self-test",
        "--mutants-dir",
        str(MUTANTS_DIR),
        "--no-control",  # the control is test_spec_verifies_with_sharded_async_checkpoints's run
        "--jobs",
        "2",
        "--run-dir",
        str(out / "self_test"),
    ]


# Independent of every other test: it runs in the background lane (tests/background.py)
# and is judged below.
megatron_self_test = background_fixture(
    "megatron_self_test",
    _mutants_command,
    lambda proc, run: (proc, run.out_dir / "self_test"),
    timeout=1700,
    when=MEGATRON_INSTALLED,
)


def test_megatron_mutants_are_caught_each_by_its_metric(
    megatron_self_test: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, run_root = megatron_self_test
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"caught {len(MUTANTS)}/{len(MUTANTS)}" in proc.stdout
    summary = json.loads((run_root / "self_test.json").read_text())
    results = {m["name"]: m for m in summary["mutants"]}
    assert set(results) == set(MUTANTS)
    for name, metric in MUTANTS.items():
        result = results[name]
        assert result["returncode"] == 1 and result["caught"], result
        assert result["finding"]["metric"] == metric
        assert_nothing_left(run_root / name)
    # Rank 1 resumed with rank 0's tracker; rank 0 got its own back.
    report = json.loads((run_root / "rng_tracker_not_per_rank" / "report.json").read_text())
    ranks = {f["rank"] for f in report["verdict"]["findings"] if f["metric"] == "megatron_rng_tracker"}
    assert 1 in ranks
    resume_ranks = {
        f["rank"]
        for f in report["verdict"]["findings"]
        if f["metric"] == "megatron_rng_tracker" and f["where"] == "resume"
    }
    assert resume_ranks == {1}


def test_tp2_checkpoint_resumes_resharded_on_tp1(tmp_path: Path) -> None:
    # Stop on 2 ranks with TP=2 (DP=1), go on 1 rank with TP=1, reference on TP=2.
    run = run_orchestrator(RESHARD_SPEC, tmp_path / "run", "--go-nproc-per-node", "1", "--quiet", timeout=900)
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    report = run.report
    saved = json.loads(
        (tmp_path / "run" / "harness" / "megatron_gpt_reshard" / "metadata" / "step2" / "rank0.json").read_text()
    )
    assert report["verdict"]["resumes"][0]["resumed_step"] == 2
    # Stop wrote its checkpoints with TP=2 on 2 ranks, go (from step 2 on) with TP=1 on 1.
    checkpoints = tmp_path / "run" / "harness" / "megatron_gpt_reshard" / "checkpoints"
    layouts = {}
    for name in ("epoch=0-step=2", "last"):
        marker = json.loads((checkpoints / name / "stop_and_go_complete.json").read_text())
        layouts[name] = (marker["tp"], marker["dp"], marker["world_size"], marker["step"])
    assert layouts == {"epoch=0-step=2": (2, 1, 2, 2), "last": (1, 1, 1, 12)}
    # The full (TP-gathered) weights and Adam moments loaded bit for bit on TP=1 ...
    checks = {c["metric"]: c for c in report["verdict"]["resume_checks"]}
    for metric in ("full_weights_digest", "full_optimizer_state_digest", "consumed_samples", "learning_rate"):
        assert checks[metric]["ok"] and checks[metric]["rank"] == 0, checks[metric]
    assert checks["full_weights_digest"]["expected"] == saved["metrics"]["full_weights_digest"]
    # ... while each TP=2 rank's own shard digest is a different thing: per rank, not compared.
    change = report["verdict"]["world_size_change"]
    changed = {c["metric"] for c in change["resume_changed"]}
    assert {"weights_digest", "optimizer_state_digest"} <= changed
    assert saved["metrics"]["weights_digest"] != saved["metrics"]["full_weights_digest"]
    # After the resume: full norms and the loss within rtol 1e-4 of the TP=2 reference, and
    # every step trained the same 4 samples.
    assert {"full_weights_norm", "train_loss"} <= set(change["tolerances"])
    assert change["samples_per_rank_step"] == {"reference": 4, "1 rank": 4}
    assert report["verdict"]["ledger"]["ok"]
    assert_nothing_left(run.run_dir)
