"""The data exactly-once ledger: did stop + go train on exactly the continuous run's samples?

Every rank of every phase records, for each batch it trains on, the sample ids and a hash
of the batch's tensors (``workers.record.ledger``), in ``ledger/<phase>/rankR.json`` of the
harness's metadata directory. Per rank, the batches the stop run trained before its
checkpoint, followed by everything the go run trained, must be the continuous run's
stream: the same samples, in the same order, none skipped, none seen twice, with the same
tensor contents. ``check_ledgers`` proves it and names the first sample that breaks it.

Torch-free: the orchestrator imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.protocol import ledger_path, read_json

LEDGER_METRIC = "sample_ledger"
"""The name under which ledger failures are reported (what a mutant declares)."""


def read_ledgers(metadata_dir: str | os.PathLike[str], phase: str, world_size: int) -> dict[int, list[dict[str, Any]]]:
    """Per-rank ledger entries of one phase (ranks that wrote none are left out)."""
    out = {}
    for rank in range(world_size):
        data = read_json(ledger_path(metadata_dir, phase, rank))
        if data is not None:
            out[rank] = list(data.get("entries", []))
    return out


@dataclass
class Sample:
    """One trained sample: its id, the epoch, the step it counted towards, and where."""

    id: Any
    epoch: int
    step: int
    phase: str
    batch_hash: str | None

    @property
    def key(self) -> tuple[int, str]:
        # Ids repeat legitimately across epochs; within an epoch each must appear once.
        return (self.epoch, repr(self.id))


@dataclass
class LedgerProblem:
    """The first place where a rank's stop + go stream departs from the continuous stream."""

    rank: int
    kind: str  # skipped, duplicated, unexpected, reordered, different data, extra
    position: int
    step: int | None
    sample: Any
    detail: str

    def describe(self) -> str:
        where = f"rank {self.rank}" + (f", step {self.step}" if self.step is not None else "")
        return f"{LEDGER_METRIC} ({where}): {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LedgerCheck:
    """The ledger comparison of every rank."""

    samples_checked: dict[int, int] = field(default_factory=dict)
    problems: list[LedgerProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "samples_checked": {str(k): v for k, v in self.samples_checked.items()},
            "problems": [p.to_dict() for p in self.problems],
        }


def _samples(entries: Sequence[Mapping[str, Any]], phase: str) -> list[Sample]:
    samples = []
    for entry in entries:
        for sample_id in entry.get("ids") or []:
            samples.append(
                Sample(sample_id, int(entry.get("epoch", 0)), int(entry["step"]) + 1, phase, entry.get("hash"))
            )
    return samples


def has_ids(entries: Sequence[Mapping[str, Any]]) -> bool:
    """True when a ledger records sample ids (specs whose batches carry none cannot be checked)."""
    return any(entry.get("ids") for entry in entries)


def _hashes_by_batch(entries: Sequence[Mapping[str, Any]]) -> list[tuple[int, str | None]]:
    return [(int(e["step"]) + 1, e.get("hash")) for e in entries]


def compare_streams(rank: int, expected: list[Sample], actual: list[Sample]) -> LedgerProblem | None:
    """The first difference between the continuous stream and the stop + go stream."""
    seen: dict[tuple[int, str], Sample] = {}
    actual_keys = {s.key for s in actual}
    expected_keys = {s.key for s in expected}
    for i, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want.key == got.key:
            seen[got.key] = got
            continue
        if got.key in seen:
            first = seen[got.key]
            return LedgerProblem(
                rank,
                "duplicated",
                i,
                got.step,
                got.id,
                f"sample {got.id!r} (epoch {got.epoch}) trained twice: at step {first.step} of {first.phase} "
                f"and again at step {got.step} of {got.phase}",
            )
        if want.key not in actual_keys:
            return LedgerProblem(
                rank,
                "skipped",
                i,
                want.step,
                want.id,
                f"sample {want.id!r} (epoch {want.epoch}, step {want.step} of the continuous run) was never "
                f"trained; {got.phase} trained {got.id!r} in its place",
            )
        if got.key not in expected_keys:
            return LedgerProblem(
                rank,
                "unexpected",
                i,
                got.step,
                got.id,
                f"sample {got.id!r} (epoch {got.epoch}) trained at step {got.step} of {got.phase} "
                f"is not in the continuous run's stream (expected {want.id!r})",
            )
        return LedgerProblem(
            rank,
            "reordered",
            i,
            got.step,
            got.id,
            f"order differs at sample #{i}: continuous trained {want.id!r}, {got.phase} trained {got.id!r}",
        )
    if len(actual) < len(expected):
        want = expected[len(actual)]
        return LedgerProblem(
            rank,
            "skipped",
            len(actual),
            want.step,
            want.id,
            f"sample {want.id!r} (epoch {want.epoch}, step {want.step} of the continuous run) was never "
            f"trained: stop + go trained {len(actual)} samples, continuous {len(expected)}",
        )
    if len(actual) > len(expected):
        extra = actual[len(expected)]
        kind = "duplicated" if extra.key in seen else "extra"
        return LedgerProblem(
            rank,
            kind,
            len(expected),
            extra.step,
            extra.id,
            f"sample {extra.id!r} trained at step {extra.step} of {extra.phase} beyond the continuous run's "
            f"{len(expected)} samples",
        )
    return None


Segment = tuple[str, Mapping[int, Sequence[Mapping[str, Any]]], int | None]
"""One phase's share of the stream: its label, per-rank ledger entries, and the step of the
checkpoint the next phase resumed from (None for the final phase, which counts whole)."""


def check_ledgers(continuous: Mapping[int, Sequence[Mapping[str, Any]]], segments: Sequence[Segment]) -> LedgerCheck:
    """Proves, per rank, that the phases' batches, cut at each resume, equal continuous's.

    A killed phase's batch belongs to the stream when it counted towards a step up to the
    checkpoint the next phase resumed from (entries record the global step before the
    batch, so ``step < cut``); batches trained after that checkpoint were lost with the
    kill and must be trained again by the next phase.
    """
    check = LedgerCheck()
    for rank in sorted(continuous):
        kept = []
        actual: list[Sample] = []
        for label, ledgers, cut in segments:
            entries = [e for e in ledgers.get(rank, []) if cut is None or int(e["step"]) < cut]
            kept.extend(entries)
            actual.extend(_samples(entries, label))
        expected = _samples(continuous[rank], "continuous")
        check.samples_checked[rank] = len(expected)
        problem = compare_streams(rank, expected, actual)
        if problem is None:
            problem = _compare_hashes(rank, continuous[rank], kept)
        if problem is not None:
            check.problems.append(problem)
    return check


def _compare_hashes(
    rank: int, expected: Sequence[Mapping[str, Any]], actual: Sequence[Mapping[str, Any]]
) -> LedgerProblem | None:
    # Same ids but different bytes: a transform or augmentation RNG that did not resume.
    for i, (want, got) in enumerate(zip(_hashes_by_batch(expected), _hashes_by_batch(actual), strict=False)):
        if want[1] != got[1]:
            return LedgerProblem(
                rank,
                "different data",
                i,
                got[0],
                None,
                f"batch #{i} (step {got[0]}) has the continuous run's sample ids but different tensors "
                f"(hash {got[1]} vs {want[1]})",
            )
    return None


def global_ledger(ledgers: Mapping[int, Sequence[Mapping[str, Any]]]) -> dict[int, list[dict[str, Any]]]:
    """Every rank's ledger merged into one, as rank 0's: per step, the sorted union of ids.

    Used when phases ran with different world sizes: which rank trains a sample changes
    with the world size, but each step's global batch must not. Batch hashes are per rank
    and are left out.
    """
    by_step: dict[tuple[int, int], list[Any]] = {}
    for entries in ledgers.values():
        for entry in entries:
            key = (int(entry["step"]), int(entry.get("epoch", 0)))
            by_step.setdefault(key, []).extend(entry.get("ids") or [])
    merged = [
        {"step": step, "epoch": epoch, "ids": sorted(ids, key=repr), "hash": None}
        for (step, epoch), ids in sorted(by_step.items())
    ]
    return {0: merged} if merged else {}


def judge_ledger(
    metadata_dir: str | os.PathLike[str],
    reference_metadata_dir: str | os.PathLike[str],
    world_size: int,
    stopping_labels: Sequence[str],
    resumed_labels: Sequence[str],
    resumed_steps: Mapping[str, int],
    world_sizes: Mapping[str, int] | None = None,
) -> LedgerCheck | None:
    """The ledger check of a run: stop (cut at go1's resume), go1 (cut at go2's) ... go.

    ``world_sizes`` gives each phase's ranks when they differ from ``world_size``; the
    streams are then compared over all ranks together (``global_ledger``).
    Returns None when it cannot apply: the spec's batches carry no sample ids, or a
    resumed phase left no resume point (already a failure of its own).
    """
    sizes = dict(world_sizes or {})
    merge = any(size != world_size for size in sizes.values())

    def read(directory: str | os.PathLike[str], phase: str) -> dict[int, list[dict[str, Any]]]:
        ledgers = read_ledgers(directory, phase, sizes.get(phase, world_size))
        return global_ledger(ledgers) if merge else ledgers

    continuous = read(reference_metadata_dir, "continuous")
    if not any(has_ids(entries) for entries in continuous.values()):
        return None
    segments: list[Segment] = []
    for i, label in enumerate(stopping_labels):
        if i >= len(resumed_labels) or resumed_labels[i] not in resumed_steps:
            return None
        segments.append((label, read(metadata_dir, label), resumed_steps[resumed_labels[i]]))
    if resumed_labels and resumed_labels[-1] not in stopping_labels:
        segments.append((resumed_labels[-1], read(metadata_dir, resumed_labels[-1]), None))
    return check_ledgers(continuous, segments)
