"""``--go-nproc-per-node``: resuming with another world size, verified or refused.

Real runs: the elastic spec stops on 2 ranks and resumes on 1 (and 1 on 2), and must
verify against the continuous reference on the world-size-independent metrics; a spec
that does not declare support is refused with a one-line usage error; a spec whose
global batch changes with the world size is caught. The scope logic itself is checked
on recorded values without processes.
"""

from __future__ import annotations

import pytest

from orchestrator.judge.ledger import check_ledgers, global_ledger
from orchestrator.judge.metric_scopes import global_trajectory, not_compared, scope_of
from tests import background
from tests.conftest import (
    DEFAULT_SPEC,
    REPO,
    SPECS,
    Run,
    assert_nothing_left,
    background_run,
    background_spec_run,
    one_line,
    orchestrator_command,
)

ELASTIC_SPEC = REPO / "harness_specs" / "elastic_lightning.py"


# These runs read no other test's files: they go in the background lane (tests/background.py).
WORLD_SIZES = [(2, 1), (1, 2)]
for _stop, _go in WORLD_SIZES:
    background.register(
        f"elastic_{_stop}_{_go}",
        lambda out, stop=_stop, go=_go: orchestrator_command(
            ELASTIC_SPEC, out / "run", "--nproc-per-node", str(stop), "--go-nproc-per-node", str(go),
            "--single-stop",  # one resume across the change of world size is the point here
            "--quiet",
        ),
        timeout=300,
        fixture="elastic_run",
    )  # fmt: skip


@pytest.fixture(scope="module")
def elastic_run(request: pytest.FixtureRequest) -> tuple[Run, int, int]:
    stop_ranks, go_ranks = request.param
    run = background_run(request, f"elastic_{stop_ranks}_{go_ranks}")
    proc = run.wait()
    return Run(proc.returncode, proc.stdout, proc.stderr, run.out_dir / "run"), stop_ranks, go_ranks


@pytest.mark.parametrize("elastic_run", WORLD_SIZES, indirect=True, ids=["2-1", "1-2"])
def test_elastic_spec_resumes_on_another_world_size(elastic_run: tuple[Run, int, int]) -> None:
    run, stop_ranks, go_ranks = elastic_run
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.report
    go_phase = next(p for p in report["phases"] if p["name"] == "go")
    assert len(go_phase["results"]) == go_ranks
    change = report["verdict"]["world_size_change"]
    assert change["stop"] == stop_ranks and change["resumed"]["go"] == go_ranks
    assert "rng_torch" in change["not_compared"] and "weights_digest" in change["not_compared"]
    assert change["samples_per_rank_step"]["reference"] == 8 // stop_ranks
    # The resume point was still checked bit for bit on the replicated state, on every go rank.
    checks = report["verdict"]["resume_checks"]
    assert {c["rank"] for c in checks if c["metric"] == "weights_digest" and c["ok"]} == set(range(go_ranks))
    assert report["verdict"]["ledger"]["ok"]
    assert "world size changed" in run.stdout
    assert_nothing_left(run.run_dir)


# Refused at stop's train start; no phase warms meanwhile (--no-prewarm).
unsupported_run = background_spec_run(
    "unsupported_run", DEFAULT_SPEC, "--go-nproc-per-node", "1", "--no-reference", "--no-prewarm", "--quiet"
)


def test_a_spec_without_support_is_refused(unsupported_run: Run) -> None:
    run = unsupported_run
    assert run.returncode == 2, run.stdout + run.stderr
    assert "does not declare supports_world_size_change" in one_line(run.stderr)
    assert_nothing_left(run.run_dir)


per_rank_batch_run = background_spec_run(
    "per_rank_batch_run", SPECS / "elastic_per_rank_batch.py", "--go-nproc-per-node", "1", "--single-stop", "--quiet"
)


def test_a_global_batch_that_changes_with_the_world_size_is_caught(per_rank_batch_run: Run) -> None:
    run = per_rank_batch_run
    assert run.returncode == 1, run.stdout + run.stderr
    findings = {f["metric"] for f in run.report["verdict"]["findings"]}
    assert "sample_ledger" in findings
    assert_nothing_left(run.run_dir)


def test_scopes_of_builtin_and_declared_metrics() -> None:
    assert scope_of("learning_rate") == "global"
    assert scope_of("weights_norm") == "norm"
    assert scope_of("rng_torch") == "per_rank"
    assert scope_of("my_metric") == "per_rank"
    assert scope_of("my_metric", {"my_metric": "global"}) == "global"
    left_out = not_compared(["weights_digest", "rng_torch", "global_step"], None, at_resume=True)
    assert set(left_out) == {"rng_torch"}
    assert set(not_compared(["weights_digest", "global_step"], None, at_resume=False)) == {"weights_digest"}


def test_global_trajectory_averages_rank_means_and_drops_per_rank_values() -> None:
    per_rank = {
        0: [{"step": 1, "metrics": {"global_step": 1, "train_loss": 1.0, "rng_torch": "a", "weights_norm": 2.0}}],
        1: [{"step": 1, "metrics": {"global_step": 1, "train_loss": 3.0, "rng_torch": "b", "weights_norm": 2.0}}],
    }
    expected = {"global_step": 1, "train_loss": 2.0, "weights_norm": 2.0}
    assert global_trajectory(per_rank) == [{"step": 1, "metrics": expected}]


def test_global_ledger_compares_each_steps_samples_over_all_ranks() -> None:
    two_ranks = {
        0: [{"step": 0, "epoch": 0, "ids": [0, 2]}, {"step": 1, "epoch": 0, "ids": [4, 6]}],
        1: [{"step": 0, "epoch": 0, "ids": [1, 3]}, {"step": 1, "epoch": 0, "ids": [5, 7]}],
    }
    one_rank_same = {0: [{"step": 0, "epoch": 0, "ids": [0, 1, 2, 3]}, {"step": 1, "epoch": 0, "ids": [4, 5, 6, 7]}]}
    one_rank_short = {0: [{"step": 0, "epoch": 0, "ids": [0, 1]}, {"step": 1, "epoch": 0, "ids": [2, 3]}]}
    reference = global_ledger(two_ranks)
    assert check_ledgers(reference, [("go", global_ledger(one_rank_same), None)]).ok
    check = check_ledgers(reference, [("go", global_ledger(one_rank_short), None)])
    assert not check.ok and check.problems[0].kind in {"skipped", "reordered"}
