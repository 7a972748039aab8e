"""Numerically aware comparison of state tensors (weights, optimizer moments, buffers).

The ``*_digest`` metrics prove bit equality. Bit equality is the wrong judge where a
reduction's summation order may change with the process (gloo all-reduce at 3 ranks sums
in an order that depends on DDP's bucket layout, which differs between a fresh and a
resumed process; GPU kernels that are not bit-reproducible): every norm and loss matches,
the digests do not. So the workers also record, after every step, the elements of each
state tensor that the step's digests covered (``orchestrator.judge.state_samples``, written by
``workers.record.state``: a bounded sample of each tensor, all of a small one), and a
digest that differs is re-judged here per tensor: ``max |go - reference|`` against
``atol + rtol * max |reference|``. Within it: a note, not a failure; beyond it: a failure
naming the tensor, the rank, the step and the size of the difference. ``--bitwise`` keeps
the strict digest verdict.

Torch-free (numpy only): the orchestrator imports this module.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.judge.compare import Tolerances
from orchestrator.judge.state_samples import read_samples

# Digest metric -> the prefix of its tensors' names in a state record.
STATE_DIGESTS = {"weights_digest": "weights/", "buffers_digest": "buffers/", "optimizer_state_digest": "optimizer/"}
# Tensor-scale tolerance: float32 reductions in another order differ by a few ulps
# (eps 1.2e-7) per step, which Adam's normalisation can amplify for near-zero moments.
STATE_RTOL = 1e-4
STATE_ATOL = 1e-7


@dataclass
class StateDifference:
    """The largest difference of one digest's tensors between a phase and the reference."""

    metric: str
    rank: int
    step: int
    tensor: str
    max_abs: float
    max_rel: float  # max_abs relative to the reference tensor's largest magnitude
    within: bool
    rtol: float
    atol: float

    def describe(self, label: str) -> str:
        size = f"max |{label} - reference| = {self.max_abs:.3g} ({self.max_rel:.3g} of the tensor's scale)"
        where = f"rank {self.rank}, step {self.step}"
        if self.within:
            return (
                f"{self.metric} ({label}, {where}) differs bitwise but within tolerance: {size} in {self.tensor} "
                f"(rtol {self.rtol:g}, atol {self.atol:g}); --bitwise makes this a failure"
            )
        return (
            f"{self.metric} ({where}): {self.tensor} differs beyond tolerance: {size}, "
            f"tolerance rtol {self.rtol:g}, atol {self.atol:g}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tolerance(metric: str, tolerances: Tolerances | None) -> tuple[float, float]:
    # A pinned tolerance for the digest (or the matching norm) widens the default.
    norm = metric.replace("_digest", "_norm")
    for name in (metric, norm):
        if tolerances and name in tolerances:
            rtol, atol = tolerances[name]
            return max(float(rtol), STATE_RTOL), max(float(atol), STATE_ATOL)
    return STATE_RTOL, STATE_ATOL


def compare_state(
    reference_dir: str | os.PathLike[str],
    candidate_dir: str | os.PathLike[str],
    candidate_phase: str,
    reference_phase: str,
    metric: str,
    rank: int,
    steps: list[int],
    tolerances: Tolerances | None = None,
) -> StateDifference | None:
    """The worst tensor difference of ``metric`` over ``steps`` (None: no samples to judge by).

    A tensor missing on one side, or of another shape, is a difference beyond tolerance.
    """
    import numpy as np

    prefix = STATE_DIGESTS[metric]
    rtol, atol = _tolerance(metric, tolerances)
    worst: StateDifference | None = None
    judged = False
    references = read_samples(reference_dir, reference_phase, rank, set(steps))
    candidates = read_samples(candidate_dir, candidate_phase, rank, set(steps))
    for step in steps:
        if step not in references or step not in candidates:
            continue
        ref = {name: v for name, v in references[step].items() if name.startswith(prefix)}
        cand = {name: v for name, v in candidates[step].items() if name.startswith(prefix)}
        judged = True
        for name in sorted(set(ref) | set(cand)):
            short = name[len(prefix) :]
            if name not in ref or name not in cand or ref[name].shape != cand[name].shape:
                return StateDifference(metric, rank, step, short, float("inf"), float("inf"), False, rtol, atol)
            want = ref[name].astype(np.float64)
            got = cand[name].astype(np.float64)
            if want.size == 0:
                continue
            diff = float(np.max(np.abs(got - want)))
            scale = float(np.max(np.abs(want)))
            rel = diff / scale if scale else (0.0 if diff == 0 else float("inf"))
            within = diff <= atol + rtol * scale
            if worst is None or (worst.within and not within) or (worst.within == within and rel > worst.max_rel):
                worst = StateDifference(metric, rank, step, short, diff, rel, within, rtol, atol)
    if not judged:
        return None
    return worst or StateDifference(metric, rank, steps[0], "(none)", 0.0, 0.0, True, rtol, atol)


def widened_tolerances(
    trajectories: dict[int, list[dict[str, Any]]], tolerances: Tolerances | None
) -> dict[str, list[float]]:
    """Every recorded metric's tolerance, at least the state's (ints and strings stay exact)."""
    from orchestrator.judge.compare import tolerance_for

    names = {m for entries in trajectories.values() for e in entries for m in e.get("metrics", {})}
    table = {}
    for name in names:
        rtol, atol = tolerance_for(name, tolerances)
        table[name] = [max(rtol, STATE_RTOL), max(atol, STATE_ATOL)]
    return table


def rejudge_state_digests(
    comparison: Any,
    candidate: dict[int, list[dict[str, Any]]],
    reference_dir: str | os.PathLike[str],
    candidate_dir: str | os.PathLike[str],
    label: str,
    reference_phase: str,
    tolerances: Tolerances | None = None,
) -> tuple[list[StateDifference], list[StateDifference]]:
    """Re-judges a ``TrajectoryComparison``'s state-digest divergences per tensor.

    Those within tolerance are removed from ``comparison.divergences``; returns them and
    the ones beyond it (digests without samples stay bitwise divergences, in neither list).
    """
    within: list[StateDifference] = []
    beyond: list[StateDifference] = []
    kept = []
    for check in comparison.divergences:
        if check.metric not in STATE_DIGESTS or check.step is None:
            kept.append(check)
            continue
        steps = sorted(int(e["step"]) for e in candidate.get(check.rank, []) if int(e["step"]) >= check.step)
        found = compare_state(
            reference_dir,
            candidate_dir,
            label,
            reference_phase,
            check.metric,
            check.rank,
            steps or [check.step],
            tolerances,
        )
        if found is None:
            kept.append(check)
        elif found.within:
            within.append(found)
        else:
            beyond.append(found)
            kept.append(check)
    comparison.divergences = kept
    return within, beyond
