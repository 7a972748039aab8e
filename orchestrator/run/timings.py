"""Where a run's wall time went: the report's ``"timings"`` (issue 15).

``kill_to_go_first_step_s`` runs from the moment the last stopping phase was confirmed
dead to the end of the final go's first optimizer step (the slowest rank's, from the
workers' progress files, ``workers.progress``): the latency a pre-warmed go cuts.
"""

from __future__ import annotations

from typing import Any

from orchestrator.protocol import PHASE_CONTINUOUS, PHASE_GO, PHASE_STOP, RunLayout
from orchestrator.run.prewarm import NEVER_RELEASED
from orchestrator.run.progress import read_progress


def first_step_time(layout: RunLayout, label: str) -> float | None:
    """When the slowest rank of ``label`` finished its first optimizer step (time.time())."""
    times = [p.get("first_step_time") for p in read_progress(layout.root, label).values()]
    known = [t for t in times if isinstance(t, int | float)]
    return max(known) if known else None


def reference_placement(reference: bool, shared_from: object | None, concurrent: bool = False) -> str:
    """Where the run's continuous reference came from, for the report."""
    if not reference:
        return "none"
    if shared_from is not None:
        return f"shared from {shared_from}"
    return "concurrent" if concurrent else "after go"


def run_timings(
    phases: list[Any],
    layout: RunLayout,
    total_s: float,
    kill_confirmed_at: float | None,
    prewarm: bool,
    reference: str,
) -> dict[str, Any]:
    """The ``"timings"`` block; ``phases`` are the run's ``PhaseRecord``s (name, wall_s, outcome).

    A pre-warmed phase killed before its go-ahead trained nothing: it has no time here.
    """
    walls = {p.name: p.wall_s for p in phases if p.outcome not in NEVER_RELEASED}
    first = first_step_time(layout, PHASE_GO)
    latency = first - kill_confirmed_at if first is not None and kill_confirmed_at is not None else None
    return {
        "stop_s": walls.get(PHASE_STOP),
        "go_s": walls.get(PHASE_GO),
        "reference_s": walls.get(PHASE_CONTINUOUS),
        "kill_to_go_first_step_s": latency,
        "total_s": total_s,
        "kill_confirmed_at": kill_confirmed_at,
        "prewarm": prewarm,
        "reference": reference,
        "phases_s": dict(walls),
    }


def timings_line(timings: dict[str, Any] | None) -> str | None:
    """The terminal summary's one line of timings, or None without any."""
    if not timings:
        return None

    def fmt(key: str) -> str:
        value = timings.get(key)
        return "-" if value is None else f"{value:.1f}s"

    latency = timings.get("kill_to_go_first_step_s")
    kill_go = "-" if latency is None else f"{latency:.2f}s"
    warm = "pre-warmed" if timings.get("prewarm") else "cold"
    return (
        f"timings: stop {fmt('stop_s')}, go {fmt('go_s')} ({warm}), reference {fmt('reference_s')} "
        f"({timings.get('reference')}), kill -> go first step {kill_go}, total {fmt('total_s')}"
    )
