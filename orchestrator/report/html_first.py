"""The first screen of the HTML report, under the verdict: the root cause and the resume points.

A person opening the page sees, without scrolling, what went wrong (the diagnosis' root
cause with its cause and fix) and the overlay of the resumed run against the continuous
reference around each resume point, zoomed on a few steps so that a one-step shift shows.
"""

from __future__ import annotations

from typing import Any

from orchestrator.judge.compare import tolerance_for
from orchestrator.report.html_charts import COLOURS, chart, escape
from orchestrator.report.run_data import MetricRow, RunTrajectories, first_divergences, is_number

# Steps shown before and after each resume point.
BEFORE, AFTER = 3, 6
# The metric shown when nothing diverged: the first of these the run recorded as a number.
FOCUS = ("train_loss", "loss", "learning_rate", "val_loss")


def root_cause(report: dict[str, Any]) -> str:
    """The diagnosis' root cause as the terminal prints it: what differed, the cause, why, the fix."""
    diagnosis = report.get("diagnosis") or []
    if not diagnosis:
        return ""
    root = diagnosis[0]
    more = root.get("downstream")
    # The evidence the cause rests on, where the diagnosis gives it (the terminal's "because:").
    because = f"<dt>because</dt><dd>{escape(root['because'])}</dd>" if root.get("because") else ""
    downstream = f'<p class="hint">and {more} downstream differences (below, and in report.json)</p>' if more else ""
    return (
        '<section class="root-cause"><h2>Root cause</h2>'
        f'<p class="detail">{escape(root.get("detail", ""))}</p>'
        f"<dl><dt>cause</dt><dd>{escape(root.get('cause', ''))}</dd>{because}"
        f"<dt>fix</dt><dd>{escape(root.get('fix', ''))}</dd></dl>{downstream}</section>"
    )


def _focus(data: RunTrajectories, rows: list[MetricRow]) -> tuple[str, int, MetricRow | None] | None:
    """The metric and rank to zoom on: the first divergence, else a loss a person knows."""
    first = first_divergences(rows)
    if first:
        row = min(first, key=lambda r: (r.first_divergent_step is None, r.first_divergent_step or 0))
        rank = row.rank if row.rank is not None else 0
        return row.metric, rank, next((r for r in rows if r.metric == row.metric and r.rank == rank), row)
    recorded = data.metrics()
    ranks = data.ranks() or [0]
    for metric in (*FOCUS, *recorded):
        if metric in recorded and any(is_number(v) for _, v in data.series(data.reference, ranks[0], metric)):
            row = next((r for r in rows if r.metric == metric and r.rank == ranks[0]), None)
            return metric, ranks[0], row
    return None


def around_resumes(data: RunTrajectories, rows: list[MetricRow], tolerances: dict[str, list[float]]) -> str:
    """One zoomed overlay per resume point (go against the reference), side by side."""
    resumes = [seg for seg in data.segments if seg.resumed_step is not None]
    focus = _focus(data, rows) if resumes else None
    if focus is None:
        return ""
    metric, rank, row = focus
    views = []
    for seg in resumes:
        step = seg.resumed_step or 0
        svg = chart(data, metric, rank, row, tolerance_for(metric, tolerances), window=(step - BEFORE, step + AFTER))
        views.append(f"<figure><figcaption>{escape(seg.label)} resumed from step {step}</figcaption>{svg}</figure>")
    key = (
        f'<span><i style="background:{COLOURS["reference"]};height:6px"></i>continuous reference</span>'
        f'<span><i style="background:{COLOURS["stop"]}"></i>stop</span>'
        f'<span><i style="background:{COLOURS["go"]}"></i>resumed</span>'
    )
    return (
        f'<section class="resumes"><h2>Around each resume point: <code>{escape(metric)}</code>, rank {rank}</h2>'
        f'<div class="legend">{key}</div><div class="resume-grid">{"".join(views)}</div>'
        f'<p class="hint">every metric and rank: <a href="#metric-{escape(metric)}">Trajectories</a></p></section>'
    )
