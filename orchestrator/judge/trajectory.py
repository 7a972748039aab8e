"""The other direction of the trajectory check: what a phase recorded that the reference did not.

``compare_trajectories`` walks the reference's metrics at the reference's steps; this
module looks at *where* each metric was recorded. Per rank and metric, within the window
of steps a phase is judged on:

- ``shift``: the metric moved (``val_loss at steps 3, 5, 7 instead of 4, 6, 8``);
- ``extra``: recorded at steps where the reference has none (an extra validation);
- ``missing``: not recorded at steps where the reference has it;
- ``extra_metric``: a metric the reference never recorded at all;
- ``extra_step``: a step the reference never trained (reported as ``global_step``).

Pure Python, torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _steps(steps: Sequence[int]) -> str:
    return ", ".join(str(s) for s in steps)


def describe(diff: Mapping[str, Any], label: str) -> str:
    """One line for a cadence difference, as ``verdict.failures`` lists it."""
    metric, kind, rank = diff["metric"], diff["kind"], diff["rank"]
    got, want = diff["steps"], diff["reference_steps"]
    head = f"{metric} ({label}, rank {rank})"
    if kind == "shift":
        return f"{head}: shifted: {metric} at steps {_steps(got)} instead of {_steps(want)}"
    if kind == "extra":
        return f"{head}: {label} recorded {metric} at steps {_steps(got)} where the reference has none"
    if kind == "missing":
        return f"{head}: {label} did not record {metric} at steps {_steps(want)}"
    if kind == "extra_metric":
        return f"{head}: {label} recorded {metric} (steps {_steps(got)}), which the reference never recorded"
    return f"global_step ({label}, rank {rank}): {label} recorded steps {_steps(got)} the reference never trained"


def cadence_differences(
    rank: int,
    reference: Mapping[int, Mapping[str, Any]],
    candidate: Mapping[int, Mapping[str, Any]],
    window: Sequence[int],
    extra_steps: Sequence[int] = (),
) -> list[dict[str, Any]]:
    """The cadence differences of one rank (see the module doc), earliest first.

    Args:
        rank: the rank (for the records).
        reference, candidate: metrics by step.
        window: the reference steps the phase is judged on; only the steps of it the
            candidate recorded count for ``extra``/``shift`` (a missing step is reported
            as such elsewhere).
        extra_steps: steps the candidate recorded in its range that the reference lacks.
    """
    found: list[dict[str, Any]] = []
    if extra_steps:
        found.append(_record(rank, "global_step", "extra_step", sorted(extra_steps), []))
    shared = [s for s in window if s in candidate and s in reference]
    ever = {m for metrics in reference.values() for m in metrics}
    names = {m for s in shared for m in (*reference[s], *candidate[s])}
    for metric in sorted(names):
        want = [s for s in shared if metric in reference[s]]
        got = [s for s in shared if metric in candidate[s]]
        if want == got:
            continue
        extra = [s for s in got if s not in want]
        missing = [s for s in want if s not in got]
        if metric not in ever:
            found.append(_record(rank, metric, "extra_metric", got, []))
        elif extra and missing:
            found.append(_record(rank, metric, "shift", extra, missing))
        elif extra:
            found.append(_record(rank, metric, "extra", extra, []))
        else:
            found.append(_record(rank, metric, "missing", [], missing))
    return sorted(found, key=lambda d: d["step"])


def _record(rank: int, metric: str, kind: str, steps: list[int], reference_steps: list[int]) -> dict[str, Any]:
    return {
        "rank": rank,
        "metric": metric,
        "kind": kind,
        "steps": steps,
        "reference_steps": reference_steps,
        "step": min([*steps, *reference_steps]),
    }


def without_shifted(divergences: list[Any], cadence: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The divergences less the ``<missing>`` values a cadence difference already explains."""
    explained = {(d["rank"], d["metric"]) for d in cadence if d["kind"] in ("shift", "missing")}
    return [c for c in divergences if not (c.actual == "<missing>" and (c.rank, c.metric) in explained)]
