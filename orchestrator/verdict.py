"""Judging a run from the files the workers left: resume checks and trajectories.

A resume is verified only if both hold:

1. at the resume point, every rank's resumed metrics equal the metrics saved at the stop
   checkpoint (the seed's check), and
2. after the resume, go's per-step metrics equal the continuous reference run's, step by
   step on every rank.

The stop run's own steps are also compared with the reference's: if they differ, the
spec is not deterministic and a go/reference difference would prove nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.compare import MetricCheck, Tolerances, TrajectoryComparison, compare_trajectories
from orchestrator.protocol import PHASE_CONTINUOUS, PHASE_GO, PHASE_STOP, MetadataLayout, read_json


@dataclass
class Verdict:
    """The outcome of the checks; ``failures`` are one-line, human-readable reasons."""

    resume_step: int
    resume_checks: list[MetricCheck] = field(default_factory=list)
    go_vs_reference: TrajectoryComparison | None = None
    stop_vs_reference: TrajectoryComparison | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "resume_step": self.resume_step,
            "failures": self.failures,
            "resume_checks": [c.to_dict() for c in self.resume_checks],
            "go_vs_reference": self.go_vs_reference.to_dict() if self.go_vs_reference else None,
            "stop_vs_reference": self.stop_vs_reference.to_dict() if self.stop_vs_reference else None,
        }


def read_trajectories(metadata_dir: str | Path, phase: str, world_size: int) -> dict[int, list[dict[str, Any]]]:
    """Per-rank trajectory entries of one phase (missing ranks are left out)."""
    layout = MetadataLayout(metadata_dir)
    out = {}
    for rank in range(world_size):
        data = read_json(layout.trajectory(phase, rank))
        if data is not None:
            out[rank] = data.get("entries", [])
    return out


def read_resume_checks(metadata_dir: str | Path, world_size: int) -> tuple[list[MetricCheck], list[int]]:
    """All ranks' resume-point checks, and the ranks that wrote none."""
    layout = MetadataLayout(metadata_dir)
    checks: list[MetricCheck] = []
    missing = []
    for rank in range(world_size):
        data = read_json(layout.resume_check(rank))
        if data is None:
            missing.append(rank)
            continue
        checks.extend(MetricCheck(**c) for c in data.get("checks", []))
    return checks, missing


def _describe(check: MetricCheck, expected_name: str, actual_name: str) -> str:
    where = f"rank {check.rank}" + (f", step {check.step}" if check.step is not None else "")
    return f"{check.metric} ({where}): {expected_name} {check.expected!r}, {actual_name} {check.actual!r}"


def judge(
    metadata_dir: str | Path,
    resume_step: int,
    world_size: int,
    reference_metadata_dir: str | Path | None,
    tolerances: Tolerances | None = None,
) -> Verdict:
    """Builds the verdict of a run whose go phase has finished."""
    verdict = Verdict(resume_step=resume_step)
    verdict.resume_checks, missing = read_resume_checks(metadata_dir, world_size)
    for rank in missing:
        verdict.failures.append(f"rank {rank} wrote no resume check (go never reached train start)")
    for check in verdict.resume_checks:
        if not check.ok:
            verdict.failures.append("at resume: " + _describe(check, "saved", "resumed"))
    if reference_metadata_dir is None:
        return verdict

    reference = read_trajectories(reference_metadata_dir, PHASE_CONTINUOUS, world_size)
    after = {r: [e for e in entries if e["step"] > resume_step] for r, entries in reference.items()}
    before = {r: [e for e in entries if e["step"] <= resume_step] for r, entries in reference.items()}
    go = read_trajectories(metadata_dir, PHASE_GO, world_size)
    stop = read_trajectories(metadata_dir, PHASE_STOP, world_size)
    verdict.stop_vs_reference = compare_trajectories(before, stop, tolerances=tolerances)
    verdict.go_vs_reference = compare_trajectories(after, go, tolerances=tolerances)
    for rank in range(world_size):
        if rank not in reference:
            verdict.failures.append(f"the reference run recorded no trajectory for rank {rank}")

    first_stop = verdict.stop_vs_reference.first_divergence()
    if first_stop is not None:
        verdict.failures.append(
            "spec is not deterministic: before the stop, "
            + _describe(first_stop, "reference", "stop")
            + "; go cannot be judged against the reference"
        )
    for check in sorted(verdict.go_vs_reference.divergences, key=lambda c: (c.step or 0, c.rank, c.metric)):
        verdict.failures.append("after resume: " + _describe(check, "reference", "go"))
    for rank, steps in verdict.go_vs_reference.missing_steps.items():
        verdict.failures.append(f"after resume: go on rank {rank} never recorded steps {steps} of the reference")
    return verdict
