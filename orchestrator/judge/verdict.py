"""Judging a run from the files the workers left: resume checks and trajectories.

A resume is verified only if both hold, for every resumed phase:

1. at the resume point, every rank's resumed metrics equal the metrics saved with the
   checkpoint it resumed from (the seed's check), and
2. every step the phase trained equals the continuous reference run's, on every rank;
   the final phase must cover every step after its resume point.

The first stop run's steps are compared with the reference's too: if they differ, the
spec is not deterministic and a resumed/reference difference would prove nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.exit_codes import ExitCode
from orchestrator.judge.compare import MetricCheck, Tolerances, TrajectoryComparison, compare_trajectories
from orchestrator.judge.diagnosis import diagnose
from orchestrator.judge.ledger import LEDGER_METRIC, LedgerCheck, judge_ledger
from orchestrator.judge.metric_scopes import global_trajectory, not_compared, world_size_tolerances
from orchestrator.judge.state_compare import rejudge_state_digests, widened_tolerances
from orchestrator.judge.trajectory import describe as describe_cadence
from orchestrator.protocol import PHASE_CONTINUOUS, PHASE_GO, PHASE_STOP, MetadataLayout, read_json


@dataclass
class Verdict:
    """The outcome of the checks; ``failures`` are one-line, human-readable reasons.

    ``resume_step`` is the step of the first resume; ``resumes`` lists every resumed
    phase (label, resumed step, checkpoint) when ``--cycles`` made several.
    ``trajectories`` holds the comparison of each phase's steps with the reference;
    ``stop_vs_reference`` and ``go_vs_reference`` are those of the first stop and the
    final go.
    """

    resume_step: int | None
    resume_checks: list[MetricCheck] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    trajectories: dict[str, TrajectoryComparison] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    # The data exactly-once check (None: no reference run, or batches without sample ids).
    ledger: LedgerCheck | None = None
    # --go-nproc-per-node: world sizes, and what was compared or left out because of it.
    world_size_change: dict[str, Any] | None = None
    # Observations that are not failures (state equal within tolerance but not bitwise).
    notes: list[str] = field(default_factory=list)
    # Per-tensor state differences of the digests that differed (within or beyond tolerance).
    state_differences: list[dict[str, Any]] = field(default_factory=list)
    # Set when stop already differed from the reference before its stop: the spec is not
    # deterministic, and no resumed phase can be judged (exit code SPEC_NONDETERMINISTIC).
    nondeterministic: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def exit_code_and_message(self) -> tuple[ExitCode, str]:
        """The run's exit code and one-line message for this verdict."""
        if self.ok:
            return ExitCode.VERIFIED, "resume verified"
        if self.nondeterministic is not None:
            return ExitCode.SPEC_NONDETERMINISTIC, self.failures[0]
        root = diagnose(self)
        return ExitCode.MISMATCH, "resume mismatch: " + (root[0]["detail"] if root else self.failures[0])

    @property
    def go_vs_reference(self) -> TrajectoryComparison | None:
        return self.trajectories.get(PHASE_GO)

    @property
    def stop_vs_reference(self) -> TrajectoryComparison | None:
        return self.trajectories.get(PHASE_STOP)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "resume_step": self.resume_step,
            "resumes": self.resumes,
            "failures": self.failures,
            "resume_checks": [c.to_dict() for c in self.resume_checks],
            "trajectories": {label: t.to_dict() for label, t in self.trajectories.items()},
            "go_vs_reference": self.go_vs_reference.to_dict() if self.go_vs_reference else None,
            "stop_vs_reference": self.stop_vs_reference.to_dict() if self.stop_vs_reference else None,
            "ledger": self.ledger.to_dict() if self.ledger else None,
            "world_size_change": self.world_size_change,
            "notes": self.notes,
            "state_differences": self.state_differences,
            "nondeterministic": self.nondeterministic,
            "findings": self.findings(),
        }

    def findings(self) -> list[dict[str, Any]]:
        """Every failed check as ``{metric, rank, step, where}``, earliest step first.

        ``where`` is ``resume`` (saved vs resumed), a phase label (its trajectory against
        the reference) or ``ledger``. A step missing from a resumed phase's trajectory is
        a ``global_step`` finding: that phase's step count went astray.
        """
        found = [
            {
                "metric": c.metric,
                "rank": c.rank,
                "step": c.step if c.step is not None else self.resume_step,
                "where": "resume",
            }
            for c in self.resume_checks
            if not c.ok
        ]
        for label, comparison in self.trajectories.items():
            found += [
                {"metric": c.metric, "rank": c.rank, "step": c.step, "where": label} for c in comparison.divergences
            ]
            for rank, steps in comparison.missing_steps.items():
                if steps:
                    found.append({"metric": "global_step", "rank": rank, "step": min(steps), "where": label})
            found += [
                {"metric": d["metric"], "rank": d["rank"], "step": d["step"], "where": label, "kind": d["kind"]}
                for d in comparison.cadence
            ]
        if self.ledger is not None:
            found += [
                {"metric": LEDGER_METRIC, "rank": p.rank, "step": p.step, "where": "ledger", "kind": p.kind}
                for p in self.ledger.problems
            ]
        return sorted(found, key=lambda f: (f["step"] if f["step"] is not None else -1, f["rank"], f["metric"]))


def read_trajectories(metadata_dir: str | Path, phase: str, world_size: int) -> dict[int, list[dict[str, Any]]]:
    """Per-rank trajectory entries of one phase label (missing ranks are left out)."""
    layout = MetadataLayout(metadata_dir)
    out = {}
    for rank in range(world_size):
        data = read_json(layout.trajectory(phase, rank))
        if data is not None:
            out[rank] = data.get("entries", [])
    return out


def read_resume_checks(metadata_dir: str | Path, label: str, world_size: int) -> tuple[list[dict[str, Any]], list[int]]:
    """Every rank's resume check of one resumed phase, and the ranks that wrote none."""
    layout = MetadataLayout(metadata_dir)
    found: list[dict[str, Any]] = []
    missing = []
    for rank in range(world_size):
        data = read_json(layout.resume_check(label, rank))
        if data is None:
            missing.append(rank)
        else:
            found.append(data)
    return found, missing


def _describe(check: MetricCheck, expected_name: str, actual_name: str) -> str:
    where = f"rank {check.rank}" + (f", step {check.step}" if check.step is not None else "")
    return f"{check.metric} ({where}): {expected_name} {check.expected!r}, {actual_name} {check.actual!r}"


def judge(
    metadata_dir: str | Path,
    world_size: int,
    reference_metadata_dir: str | Path | None,
    resumed_labels: list[str],
    stopping_labels: list[str],
    tolerances: Tolerances | None = None,
    world_sizes: dict[str, int] | None = None,
    metric_scopes: dict[str, str] | None = None,
    bitwise: bool = False,
) -> Verdict:
    """Builds the verdict of a run whose final resumed phase has finished.

    Args:
        metadata_dir: the stop/go harness's metadata directory.
        world_size: ranks per phase.
        reference_metadata_dir: the continuous run's metadata directory (None: no reference).
        resumed_labels: the resumed phases in order (``go1`` ... ``go``).
        stopping_labels: the phases that were killed, in order (``stop``, ``go1`` ...).
        tolerances: per-metric ``(rtol, atol)`` overrides.
        world_sizes: ranks of each phase by label where they differ from ``world_size``
            (``--go-nproc-per-node``); those phases are compared with the reference on
            world-size-independent values only (``orchestrator.judge.metric_scopes``).
        metric_scopes: the spec's declared metric scopes.
        bitwise: judge state digests bit for bit (``--bitwise``); by default a digest
            that differs is re-judged per tensor (``orchestrator.judge.state_compare``).
    """
    sizes = {label: world_size for label in [*resumed_labels, *stopping_labels]}
    sizes.update(world_sizes or {})
    verdict = Verdict(resume_step=None)
    if any(size != world_size for size in sizes.values()):
        verdict.world_size_change = {"stop": world_size, "resumed": sizes, "not_compared": {}, "resume_changed": []}
    for label in resumed_labels:
        found, missing = read_resume_checks(metadata_dir, label, sizes[label])
        for rank in missing:
            verdict.failures.append(f"{label}: rank {rank} wrote no resume check (it never reached train start)")
        if found:
            first = found[0]
            verdict.resumes.append(
                {"label": label, "resumed_step": first["resumed_step"], "checkpoint": first.get("checkpoint")}
            )
            if verdict.resume_step is None:
                verdict.resume_step = first["resumed_step"]
        for data in found:
            if verdict.world_size_change is not None:
                verdict.world_size_change["resume_changed"].extend(data.get("changed", []))
            for raw in data.get("checks", []):
                check = MetricCheck(**raw)
                if check.step is None:  # the step of this resume (go1's is not the first resume's)
                    check.step = data.get("resumed_step")
                verdict.resume_checks.append(check)
                if verdict.resumes and verdict.resumes[-1]["label"] == label:  # per resume point (--cycles)
                    entry = verdict.resumes[-1]
                    entry["values"] = entry.get("values", 0) + 1
                    entry["mismatched"] = entry.get("mismatched", 0) + (not check.ok)
                if not check.ok:
                    verdict.failures.append(f"at resume ({label}): " + _describe(check, "saved", "resumed"))
    if reference_metadata_dir is None:
        return verdict

    reference = read_trajectories(reference_metadata_dir, PHASE_CONTINUOUS, world_size)
    for rank in range(world_size):
        if rank not in reference:
            verdict.failures.append(f"the reference run recorded no trajectory for rank {rank}")
    for label in [*stopping_labels, *(lb for lb in resumed_labels if lb not in stopping_labels)]:
        candidate = read_trajectories(metadata_dir, label, sizes[label])
        phase_reference, phase_tolerances = reference, tolerances
        if sizes[label] != world_size:
            phase_reference, candidate, phase_tolerances = _across_world_sizes(
                reference, candidate, metric_scopes, tolerances, verdict
            )
        start = next((r["resumed_step"] for r in verdict.resumes if r["label"] == label), None)

        how: dict[str, Any] = {"only_recorded": True}  # a killed phase: what each rank recorded before the kill
        if label in resumed_labels and start is not None:
            # The final phase must cover every reference step after its resume point; one that
            # was killed (go1, --cycles), every step up to the last that all its ranks recorded.
            last_steps = (max(e["step"] for e in rows) for rows in candidate.values() if rows)
            upto = float("inf") if label == resumed_labels[-1] else min(last_steps, default=None)
            if upto is not None:
                steps = sorted(
                    {int(e["step"]) for rows in reference.values() for e in rows if start < e["step"] <= upto}
                )
                how = {"steps": steps, "after": start}
        comparison = compare_trajectories(phase_reference, candidate, tolerances=phase_tolerances, **how)
        if not bitwise and sizes[label] == world_size:
            within, beyond = rejudge_state_digests(
                comparison, candidate, reference_metadata_dir, metadata_dir, label, PHASE_CONTINUOUS, tolerances
            )
            if within and not beyond:
                # The state differs within the noise floor: floats computed from it (losses,
                # norms) carry that noise too, so they are judged at the state's tolerance.
                wide = widened_tolerances(reference, phase_tolerances)
                comparison = compare_trajectories(phase_reference, candidate, tolerances=wide, **how)
                within, beyond = rejudge_state_digests(
                    comparison, candidate, reference_metadata_dir, metadata_dir, label, PHASE_CONTINUOUS, tolerances
                )
            verdict.notes.extend(d.describe(label) for d in within)
            verdict.state_differences.extend({"label": label, **d.to_dict()} for d in [*within, *beyond])
            beyond_by_key = {(d.metric, d.rank): d for d in beyond}
        else:
            beyond_by_key = {}
        verdict.trajectories[label] = comparison
        # A missing step comes first: the steps after it are shifted, not wrong by themselves.
        for rank, absent in comparison.missing_steps.items():
            verdict.failures.append(
                f"global_step ({label}, rank {rank}): {label} never recorded steps {absent} of the reference"
            )
        before_any_resume = bool(stopping_labels) and label == stopping_labels[0]
        verdict.failures.extend(f"after resume ({label}): " + describe_cadence(d, label) for d in comparison.cadence)
        for check in sorted(comparison.divergences, key=lambda c: (c.step or 0, c.rank, c.metric)):
            if before_any_resume:
                verdict.nondeterministic = {
                    "metric": check.metric,
                    "rank": check.rank,
                    "step": check.step,
                    "reference": check.expected,
                    "stop": check.actual,
                }
                verdict.failures.append(
                    "spec is not deterministic: before the first stop, "
                    + _describe(check, "reference", "stop")
                    + "; resumed runs cannot be judged against the reference"
                )
                break
            state = beyond_by_key.get((check.metric, check.rank))
            detail = state.describe(label) if state else _describe(check, "reference", label)
            verdict.failures.append(f"after resume ({label}): " + detail)

    # Data exactly-once: stop's batches up to go1's resume point + ... + go's == continuous's.
    resumed_steps = {r["label"]: r["resumed_step"] for r in verdict.resumes}
    verdict.ledger = judge_ledger(
        metadata_dir, reference_metadata_dir, world_size, stopping_labels, resumed_labels, resumed_steps, sizes
    )
    if verdict.ledger is not None:
        verdict.failures.extend("data: " + problem.describe() for problem in verdict.ledger.problems)
    if verdict.nondeterministic is not None:
        # Once stop differs from the reference, go's differences mean nothing: name only that.
        verdict.failures = [f for f in verdict.failures if f.startswith("spec is not deterministic")]
    return verdict


def _across_world_sizes(
    reference: dict[int, list[dict[str, Any]]],
    candidate: dict[int, list[dict[str, Any]]],
    scopes: dict[str, str] | None,
    tolerances: Tolerances | None,
    verdict: Verdict,
) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[dict[str, Any]]], dict[str, list[float]]]:
    """Both trajectories reduced to world-size-independent values, as rank 0's, with the
    tolerances for them; records in ``verdict`` what was left out and why."""
    metrics = sorted({m for entries in reference.values() for e in entries for m in e.get("metrics", {})})
    assert verdict.world_size_change is not None
    verdict.world_size_change["not_compared"].update(not_compared(metrics, scopes, at_resume=False))
    verdict.world_size_change["tolerances"] = world_size_tolerances(metrics, scopes, tolerances)
    table = {**(tolerances or {}), **verdict.world_size_change["tolerances"]}
    batch = verdict.world_size_change.setdefault("samples_per_rank_step", {})
    batch.setdefault("reference", _samples_per_rank_step(reference))
    batch[f"{len(candidate)} rank" + ("s" if len(candidate) != 1 else "")] = _samples_per_rank_step(candidate)
    return {0: global_trajectory(reference, scopes)}, {0: global_trajectory(candidate, scopes)}, table


def _samples_per_rank_step(trajectories: dict[int, list[dict[str, Any]]]) -> int | None:
    """How many samples one rank trained in one step (None when batches carry no ids).

    The largest count over ranks: ranks that share a batch (tensor-parallel peers) may
    record it on one of them only.
    """
    counts = [
        len(ids)
        for entries in trajectories.values()
        for entry in entries
        if isinstance(ids := entry.get("metrics", {}).get("batch_sample_ids"), list) and ids
    ]
    return max(counts) if counts else None
