"""Issue 29: terminal lines a newcomer can read: long values cut with a count, phase labels
explained where they first appear (report.json keeps everything whole)."""

from __future__ import annotations

import hashlib
import io
from typing import Any

from orchestrator.protocol import PhasePlan
from orchestrator.report.phase_names import (
    ExplainingEvents,
    explain_first,
    legend,
    meaning_note,
    phase_meaning,
    phase_meanings,
)
from orchestrator.report.readable import cut_long_values, list_literals
from orchestrator.report.summary import diagnosis_lines
from orchestrator.run.events import PlainEvents


def _ids(seed: int, n: int = 32) -> list[str]:
    # What workers.record.ledger records for a batch without ids: "#" and 12 hex digits per sample.
    return ["#" + hashlib.sha256(f"{seed}-{i}".encode()).hexdigest()[:12] for i in range(n)]


def test_two_id_lists_of_a_data_finding_become_one_short_comparison() -> None:
    reference, go = _ids(0), _ids(1)
    line = f"after resume (go): batch_sample_ids (rank 0, step 3): reference {reference!r}, go {go!r}"
    assert len(line) > 1000
    cut = cut_long_values(line)
    a, b = (f"{x[0][:5]}…, {x[1][:5]}…" for x in (reference, go))
    assert (
        cut == f"after resume (go): batch_sample_ids (rank 0, step 3): reference vs go: 32 ids, 32 differ: {a} vs {b}"
    )
    assert len(cut) < 130  # from 1157 characters


def test_the_comparison_shows_the_first_ids_that_differ() -> None:
    reference = _ids(0)
    go = reference[:5] + _ids(1)[5:7] + reference[7:]
    cut = cut_long_values(f"batch_sample_ids (go, rank 1, step 4): reference {reference!r}, go {go!r}")
    assert cut.endswith(f"reference vs go: 32 ids, 2 differ: {reference[5][:5]}…, {reference[6][:5]}… vs "
                        f"{go[5][:5]}…, {go[6][:5]}…")  # fmt: skip


def test_ids_that_share_a_prefix_are_shown_up_to_where_they_differ() -> None:
    reference = [f"sample_{i:04d}" for i in range(20)]
    go = [f"sample_{i:04d}" for i in range(40, 60)]
    cut = cut_long_values(f"batch_sample_ids (go, rank 0, step 3): reference {reference!r}, go {go!r}")
    assert cut.endswith("20 ids, 20 differ: sample_0000, sample_0001 vs sample_0040, sample_0041")
    hashes = [f"#{i:012x}" for i in range(20)], [f"#{i + 99:012x}" for i in range(20)]
    cut = cut_long_values(f"batch_sample_ids (go, rank 0, step 3): reference {hashes[0]!r}, go {hashes[1]!r}")
    assert cut.endswith("20 ids, 20 differ: #000000000000, #000000000001 vs #000000000063, #000000000064")
    # One list shorter than the other: its missing items are not invented.
    assert cut_long_values(f"x: saved {list(range(20))!r}, resumed {list(range(18))!r}").endswith(
        "saved vs resumed: 20 vs 18 values, 2 differ: 18, 19 vs -"
    )


def test_short_values_and_prose_stay_as_they_are() -> None:
    for line in (
        "after resume (go): batch_sample_ids (rank 0, step 3): reference [15, 23, 31, 0], go [47, 40, 60, 16]",
        "go1 never recorded steps [3] of the reference (rank 0)",
        "consumed_samples at resume (rank 0, step 2): saved 8, resumed 0",
    ):
        assert cut_long_values(line) == line


def test_a_long_list_alone_is_cut_to_its_count_and_first_items() -> None:
    line = f"go never recorded steps {list(range(3, 40))!r} of the reference (rank 0), see 'a [' in quotes"
    assert (
        cut_long_values(line)
        == "go never recorded steps [37 values: 3, 4, …] of the reference (rank 0), see 'a [' in quotes"
    )
    # Two long lists not named as a finding names them are cut one by one.
    assert cut_long_values(f"{list(range(30))!r} and {list(range(30))!r}") == (
        "[30 values: 0, 1, …] and [30 values: 0, 1, …]"
    )


def test_list_literals_skip_brackets_inside_strings_and_non_literals() -> None:
    found = [value for _, _, value in list_literals("x ['a]', 'b'] [not a literal] [1, [2, 3]]")]
    assert found == [["a]", "b"], [1, [2, 3]]]


def test_the_root_cause_line_is_cut_and_the_report_keeps_it_whole() -> None:
    reference, go = _ids(0), _ids(1)
    detail = f"batch_sample_ids (go, rank 0, step 3): reference {reference!r}, go {go!r}"
    diagnosis: list[dict[str, Any]] = [{"detail": detail, "cause": "c", "fix": "f"}]
    lines = diagnosis_lines(diagnosis)
    assert lines[1].startswith("root cause: batch_sample_ids (go, rank 0, step 3): reference vs go: 32 ids, 32 differ")
    assert max(len(line) for line in lines) < 120
    assert diagnosis[0]["detail"] == detail  # what report.json holds


def test_resumed_phases_that_stop_again_are_explained() -> None:
    assert phase_meaning("go1", later_epoch=True) == "the first resumed phase, stopped again at a later epoch"
    assert phase_meaning("go2") == "the second resumed phase, stopped again at a later step"
    assert phase_meaning("go12") == "the 12th resumed phase, stopped again at a later step"
    assert all(phase_meaning(label) is None for label in ("stop", "go", "continuous", "go_on"))
    plans = [PhasePlan("stop", "stop"), PhasePlan("go1", "go", stop_in_later_epoch=True), PhasePlan("go", "go")]
    meanings = phase_meanings(plans)
    assert meanings == {"go1": "the first resumed phase, stopped again at a later epoch"}
    assert legend(["stop", "go1", "go"], meanings) == ["go1 = the first resumed phase, stopped again at a later epoch"]


def test_a_label_is_explained_at_its_first_mention_only() -> None:
    meanings = {"go1": "the first resumed phase, stopped again at a later epoch"}
    explained: set[str] = set()
    first = explain_first("go1: pre-warming (waits for its go-ahead)", meanings, explained)
    assert (
        first == "go1 (the first resumed phase, stopped again at a later epoch): pre-warming (waits for its go-ahead)"
    )
    assert explain_first("go1: killed after the sentinel", meanings, explained) == "go1: killed after the sentinel"
    assert explain_first("go: finished", {"go1": "x"}, set()) == "go: finished"  # whole words only
    note = meaning_note("go1 phase failed: rank 0: boom (log: /r/logs/go1.log)", meanings)
    assert note == " (go1: the first resumed phase, stopped again at a later epoch)"
    assert meaning_note("go phase failed", meanings) == ""


def test_plain_events_explain_go1_in_the_first_line_that_names_it() -> None:
    out = io.StringIO()
    events = ExplainingEvents(PlainEvents(out, echo_workers=False), {"go1": "the first resumed phase"})
    events.event("phase_started", "stop", "stop: launched torchrun (pid 1, 2 workers)")
    events.event("phase_started", "go1", "go1: pre-warming torchrun (pid 2, 2 workers)")
    events.event("killed", "go1", "go1: killed after the sentinel")
    events.worker_line("go1", 0, "ignored without -v")
    assert out.getvalue().splitlines() == [
        "[orchestrator] stop: launched torchrun (pid 1, 2 workers)",
        "[orchestrator] go1 (the first resumed phase): pre-warming torchrun (pid 2, 2 workers)",
        "[orchestrator] go1: killed after the sentinel",
    ]


def test_a_scheduler_state_that_differs_shows_only_the_keys_that_differ() -> None:
    # What a plain loop's lr_scheduler_state finding holds: one LambdaLR state dict a side.
    saved: dict[str, Any] = {"_is_initial": False, "_last_lr": [0.01], "base_lrs": [0.01], "last_epoch": 4}
    resumed = {**saved, "_last_lr": [0.002], "last_epoch": 0}
    line = cut_long_values(f"lr_scheduler_state at resume (rank 0, step 4): saved {[saved]!r}, resumed {[resumed]!r}")
    assert line == (
        "lr_scheduler_state at resume (rank 0, step 4): saved vs resumed: 1 value, 1 differ: "
        "_last_lr [0.01] vs [0.002], last_epoch 4 vs 0"
    )
