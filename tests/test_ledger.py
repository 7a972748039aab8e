"""The data exactly-once ledger: a skipped, a duplicated, a reordered or a changed sample is named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from orchestrator.judge.ledger import LEDGER_METRIC, check_ledgers, judge_ledger, ledger_path
from orchestrator.protocol import write_json_atomic

BATCH = 2


def stream(ids: list[int], epoch_of: Any = lambda i: 0, first_step: int = 0) -> list[dict[str, Any]]:
    """Ledger entries of batches of ``BATCH`` ids, one optimizer step per batch."""
    entries = []
    for n, start in enumerate(range(0, len(ids), BATCH)):
        chunk = ids[start : start + BATCH]
        entries.append({"step": first_step + n, "epoch": epoch_of(n), "ids": chunk, "hash": f"h{chunk}"})
    return entries


# Rank 0 trains samples 0..11 over 6 steps; rank 1 trains 100..111.
CONTINUOUS = {0: stream(list(range(12))), 1: stream(list(range(100, 112)))}


def split(entries: list[dict[str, Any]], resume_step: int, lost_steps: int = 1) -> tuple[list, list]:
    """A stop that ran ``lost_steps`` past its checkpoint, and a go that resumed correctly."""
    stop = [e for e in entries if e["step"] < resume_step + lost_steps]
    go = [e for e in entries if e["step"] >= resume_step]
    return stop, go


def segments(stop: dict, go: dict, resume_step: int) -> list:
    return [("stop", stop, resume_step), ("go", go, None)]


def test_correct_resume_passes_even_when_stop_trained_past_its_checkpoint() -> None:
    stop, go = {}, {}
    for rank, entries in CONTINUOUS.items():
        stop[rank], go[rank] = split(entries, resume_step=2, lost_steps=2)
    check = check_ledgers(CONTINUOUS, segments(stop, go, 2))
    assert check.ok, check.problems
    assert check.samples_checked == {0: 12, 1: 12}


def test_duplicated_sample_is_named() -> None:
    # go restarts the epoch: it trains samples 0 and 1 again (the sampler-restart bug).
    stop = {r: split(e, 2)[0] for r, e in CONTINUOUS.items()}
    go = {0: stream(list(range(8)), first_step=2), 1: split(CONTINUOUS[1], 2)[1]}
    check = check_ledgers(CONTINUOUS, segments(stop, go, 2))
    assert not check.ok
    [problem] = check.problems
    assert (problem.rank, problem.kind, problem.sample, problem.step) == (0, "duplicated", 0, 3)
    text = problem.describe()
    assert text.startswith(f"{LEDGER_METRIC} (rank 0, step 3)")
    assert "sample 0" in text and "trained twice" in text and "step 1 of stop" in text


def test_skipped_sample_is_named() -> None:
    # go skips one batch too many on rank 1: samples 104 and 105 are never trained.
    stop = {r: split(e, 2)[0] for r, e in CONTINUOUS.items()}
    go = {0: split(CONTINUOUS[0], 2)[1], 1: stream(list(range(106, 112)), first_step=2)}
    check = check_ledgers(CONTINUOUS, segments(stop, go, 2))
    [problem] = check.problems
    assert (problem.rank, problem.kind, problem.sample, problem.step) == (1, "skipped", 104, 3)
    assert "sample 104" in problem.describe() and "never trained" in problem.describe()


def test_missing_tail_is_a_skip() -> None:
    stop = {r: split(e, 2)[0] for r, e in CONTINUOUS.items()}
    go = {r: split(e, 2)[1][:-1] for r, e in CONTINUOUS.items()}
    check = check_ledgers(CONTINUOUS, segments(stop, go, 2))
    assert {(p.rank, p.kind, p.sample) for p in check.problems} == {(0, "skipped", 10), (1, "skipped", 110)}


def test_reordered_and_changed_data_are_caught() -> None:
    stop = {r: split(e, 2)[0] for r, e in CONTINUOUS.items()}
    go = {r: copy.deepcopy(split(e, 2)[1]) for r, e in CONTINUOUS.items()}
    go[0][0]["ids"] = [5, 4]  # same samples, other order
    go[1][1]["hash"] = "other bytes"  # same ids, different tensors (an augmentation RNG)
    check = check_ledgers(CONTINUOUS, segments(stop, go, 2))
    kinds = {p.rank: p.kind for p in check.problems}
    assert kinds == {0: "reordered", 1: "different data"}


def test_ids_repeat_across_epochs_without_counting_as_duplicates() -> None:
    # Two epochs of the same 4 samples; the resume falls in the second epoch.
    ids = [0, 1, 2, 3, 2, 0, 3, 1]
    continuous = {0: stream(ids, epoch_of=lambda n: n // 2)}
    stop, go = split(continuous[0], resume_step=3)
    assert check_ledgers(continuous, segments({0: stop}, {0: go}, 3)).ok
    # A go that replays the second epoch from its start trains sample 2 twice in epoch 1.
    replay = stream([2, 0, 3, 1], epoch_of=lambda n: 1, first_step=3)
    [problem] = check_ledgers(continuous, segments({0: stop}, {0: replay}, 3)).problems
    assert (problem.kind, problem.sample) == ("duplicated", 2)


def test_several_cycles_are_cut_at_each_resume() -> None:
    entries = CONTINUOUS[0]
    stop = [e for e in entries if e["step"] < 2]
    go1 = [e for e in entries if 2 <= e["step"] < 5]  # killed after step 4, resumed from 4
    go = [e for e in entries if e["step"] >= 4]
    check = check_ledgers({0: entries}, [("stop", {0: stop}, 2), ("go1", {0: go1}, 4), ("go", {0: go}, None)])
    assert check.ok, check.problems


def test_judge_ledger_reads_the_files_and_skips_specs_without_ids(tmp_path: Path) -> None:
    harness, reference = tmp_path / "harness", tmp_path / "reference"
    for rank, entries in CONTINUOUS.items():
        stop, go = split(entries, 2)
        write_json_atomic(ledger_path(reference, "continuous", rank), {"entries": entries})
        write_json_atomic(ledger_path(harness, "stop", rank), {"entries": stop})
        write_json_atomic(ledger_path(harness, "go", rank), {"entries": go[1:]})  # go lost a batch
    check = judge_ledger(harness, reference, 2, ["stop"], ["go"], {"go": 2})
    assert check is not None
    assert {(p.rank, p.kind, p.sample) for p in check.problems} == {(0, "skipped", 4), (1, "skipped", 104)}

    no_ids = tmp_path / "no_ids"
    write_json_atomic(ledger_path(no_ids, "continuous", 0), {"entries": [{"step": 0, "ids": None, "hash": "x"}]})
    assert judge_ledger(harness, no_ids, 1, ["stop"], ["go"], {"go": 2}) is None
