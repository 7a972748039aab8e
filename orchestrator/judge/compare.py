"""Comparison of recorded metric values (torch-free; the go workers use it too).

Values are what the workers wrote as JSON: numbers, strings, lists and dicts of them.
Integers, booleans and strings compare exactly; floats within ``rtol``/``atol``
(``math.isclose``), with NaN equal to NaN so a diverged run still compares to itself.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.judge.trajectory import cadence_differences, without_shifted

# Deterministic CPU runs reproduce floats bit for bit; the tolerance only absorbs
# float formatting and summation order in reductions that specs may log.
DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-9

Tolerances = Mapping[str, Sequence[float]]

EVIDENCE_METRICS = frozenset({"module_attributes", "rng_restored"})
"""Recorded for the diagnosis (``orchestrator.judge.evidence``), never a failure by
themselves: a Python attribute that differs may be harmless (a timer, a log counter)."""

# ``--tolerances FILE``: the orchestrator passes the table to the workers as JSON in this
# variable, so the resume-point check in the workers honours it like the verdict does.
ENV_TOLERANCES = "STOP_AND_GO_TOLERANCES"


def tolerances_from_env() -> dict[str, list[float]]:
    """The ``--tolerances`` table the orchestrator passed down (empty when none)."""
    raw = os.environ.get(ENV_TOLERANCES)
    if not raw:
        return {}
    table = json.loads(raw)
    return {str(k): [float(v[0]), float(v[1])] for k, v in table.items()}


def tolerance_for(metric: str, tolerances: Tolerances | None) -> tuple[float, float]:
    """The (rtol, atol) pair for ``metric``: a per-metric override or the defaults."""
    if tolerances and metric in tolerances:
        rtol, atol = tolerances[metric]
        return float(rtol), float(atol)
    return DEFAULT_RTOL, DEFAULT_ATOL


def values_match(expected: Any, actual: Any, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> bool:
    """True when two recorded values are equal (floats within tolerance), recursively."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, int) and isinstance(actual, int):
        return expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if math.isnan(expected) or math.isnan(actual):
            return math.isnan(expected) and math.isnan(actual)
        return math.isclose(expected, actual, rel_tol=rtol, abs_tol=atol)
    if isinstance(expected, str) or isinstance(actual, str):
        return expected == actual
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return expected.keys() == actual.keys() and all(
            values_match(expected[k], actual[k], rtol, atol) for k in expected
        )
    if isinstance(expected, Sequence) and isinstance(actual, Sequence):
        return len(expected) == len(actual) and all(
            values_match(e, a, rtol, atol) for e, a in zip(expected, actual, strict=True)
        )
    return expected == actual


@dataclass
class MetricCheck:
    """One metric compared between a saved and a resumed (or reference and candidate) value."""

    metric: str
    rank: int
    expected: Any
    actual: Any
    ok: bool
    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_metrics(
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    rank: int,
    tolerances: Tolerances | None = None,
    step: int | None = None,
) -> list[MetricCheck]:
    """Compares every metric in ``expected``; a metric missing from ``actual`` fails.

    ``EVIDENCE_METRICS`` are carried with both values and always pass.
    """
    checks = []
    for name, want in expected.items():
        rtol, atol = tolerance_for(name, tolerances)
        if name not in actual:
            checks.append(MetricCheck(name, rank, want, "<missing>", name in EVIDENCE_METRICS, step))
            continue
        got = actual[name]
        ok = name in EVIDENCE_METRICS or values_match(want, got, rtol, atol)
        checks.append(MetricCheck(name, rank, want, got, ok, step))
    return checks


@dataclass
class TrajectoryComparison:
    """Step-by-step comparison of a candidate run against a reference run, all ranks."""

    compared_values: int
    steps: list[int]
    divergences: list[MetricCheck]  # the first divergent step of each (rank, metric)
    missing_steps: dict[int, list[int]]  # rank -> reference steps the candidate lacks
    # What the candidate recorded where the reference did not (``orchestrator.judge.trajectory``).
    cadence: list[dict[str, Any]] = field(default_factory=list)
    # EVIDENCE_METRICS that differed (the first step of each rank and metric): not failures,
    # but what the diagnosis reads (an attribute stop did not reproduce is no training state).
    evidence: list[MetricCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences and not any(self.missing_steps.values()) and not self.cadence

    def first_divergence(self) -> MetricCheck | None:
        if not self.divergences:
            return None
        return min(self.divergences, key=lambda c: (c.step if c.step is not None else -1, c.rank, c.metric))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "compared_values": self.compared_values,
            "steps": self.steps,
            "divergences": [d.to_dict() for d in self.divergences],
            "missing_steps": {str(k): v for k, v in self.missing_steps.items()},
            "cadence": self.cadence,
        }


def _by_step(entries: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    return {int(e["step"]): e.get("metrics", {}) for e in entries}


def compare_trajectories(
    reference: Mapping[int, Sequence[Mapping[str, Any]]],
    candidate: Mapping[int, Sequence[Mapping[str, Any]]],
    steps: Sequence[int] | None = None,
    tolerances: Tolerances | None = None,
    only_recorded: bool = False,
    after: int | None = None,
) -> TrajectoryComparison:
    """Compares per-rank trajectories (lists of ``{"step", "metrics"}``) step by step.

    ``steps`` limits the comparison to those steps (default: every step the reference
    recorded). A step the reference has and the candidate lacks is reported as missing,
    unless ``only_recorded``: then each rank is compared on the steps it recorded (a
    killed phase's ranks may have flushed different amounts before the kill).
    Both directions: steps the candidate recorded after ``after`` (or, with
    ``only_recorded``, at all) that the reference lacks, and metrics recorded at other
    steps than the reference's, are ``cadence`` differences.
    """
    divergences: list[MetricCheck] = []
    missing: dict[int, list[int]] = {}
    cadence: list[dict[str, Any]] = []
    evidence: list[MetricCheck] = []
    compared = 0
    all_steps: set[int] = set()
    for rank in sorted(reference):
        ref = _by_step(reference[rank])
        cand = _by_step(candidate.get(rank, []))
        wanted = sorted(ref) if steps is None else sorted(s for s in steps if s in ref)
        if only_recorded:
            wanted = [s for s in wanted if s in cand]
        all_steps.update(wanted)
        first_bad: dict[str, MetricCheck] = {}
        first_evidence: dict[str, MetricCheck] = {}
        for step in wanted:
            if step not in cand:
                missing.setdefault(rank, []).append(step)
                continue
            for check in check_metrics(ref[step], cand[step], rank, tolerances, step):
                compared += 1
                if not check.ok and check.metric not in first_bad:
                    first_bad[check.metric] = check
                elif check.metric in EVIDENCE_METRICS and not values_match(check.expected, check.actual):
                    first_evidence.setdefault(check.metric, check)
        divergences.extend(first_bad.values())
        evidence.extend(first_evidence.values())
        extra = [s for s in cand if s not in ref and (only_recorded or (after is not None and s > after))]
        cadence.extend(cadence_differences(rank, ref, cand, wanted, extra))
    divergences = without_shifted(divergences, cadence)
    return TrajectoryComparison(compared, sorted(all_steps), divergences, missing, cadence, evidence)
