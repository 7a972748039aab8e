"""``--png-report``: the loss and learning-rate overlay as a PNG, for places without HTML.

matplotlib (and with it numpy) is imported only inside ``write_png_report``: the
orchestrator's own import stays light, and only a run that asks for a PNG pays for it.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from orchestrator.report.run_data import (
    MISMATCH,
    NONDETERMINISTIC,
    RunTrajectories,
    is_number,
    load_trajectories,
    metric_rows,
)

# The panels, in order: the first metric of each tuple that the run recorded is drawn.
PANELS = (("train_loss", "loss", "val_loss"), ("learning_rate", "lr"))
REFERENCE, STOP, GO, KILL, RESUME, DIVERGE = "#94a3b8", "#2563eb", "#ea580c", "#dc2626", "#16a34a", "#dc2626"


def _points(series: list[tuple[int, Any]]) -> tuple[list[int], list[float]]:
    pairs = [(s, float(v)) for s, v in series if is_number(v) and math.isfinite(v)]
    return [s for s, _ in pairs], [v for _, v in pairs]


def write_png_report(report: dict[str, Any], path: str | Path, rank: int = 0) -> Path:
    """Draws the loss and LR trajectories of ``rank``: reference vs stop+go, kill and resume marked."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to the file
    import matplotlib.pyplot as plt

    data = load_trajectories(report)
    rows = metric_rows(report, data)
    recorded = set(data.metrics())
    panels = [next(m for m in group if m in recorded) for group in PANELS if any(m in recorded for m in group)]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(max(len(panels), 1), 1, figsize=(11, 3.2 * max(len(panels), 1)), squeeze=False)
    failed = report.get("exit_code") != 0
    headline = f"{Path(str(report.get('spec') or '?')).name}: exit {report.get('exit_code')}"
    detail = textwrap.shorten(str(report.get("message", "")), width=120, placeholder="…")
    fig.suptitle(f"{headline}\n{detail}", fontsize=10, color="#b91c1c" if failed else "#15803d")
    if not panels:
        axes[0][0].text(0.5, 0.5, "no loss or learning rate was recorded", ha="center", va="center")
        axes[0][0].set_axis_off()
    for ax, metric in zip((a[0] for a in axes), panels, strict=False):
        _panel(ax, data, metric, rank, _divergent_step(rows, metric, rank))
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def _divergent_step(rows: list[Any], metric: str, rank: int) -> int | None:
    for row in rows:
        if row.metric == metric and row.rank == rank and row.status in (MISMATCH, NONDETERMINISTIC):
            return row.first_divergent_step
    return None


def _panel(ax: Any, data: RunTrajectories, metric: str, rank: int, diverge: int | None) -> None:
    ref_x, ref_y = _points(data.series(data.reference, rank, metric))
    if ref_x:
        ax.plot(ref_x, ref_y, color=REFERENCE, linewidth=6, alpha=0.6, label="continuous reference", zorder=1)
    labelled: set[str] = set()

    def once(name: str) -> str:
        # One legend entry per kind, however many cycles there are.
        if name in labelled:
            return "_nolegend_"
        labelled.add(name)
        return name

    for seg in data.segments:
        xs, ys = _points(data.series(seg.steps, rank, metric))
        saved = seg.saved.get(rank, {}).get(metric)
        resumed = seg.resumed.get(rank, {}).get(metric)
        if seg.resumed_step is not None and is_number(saved) and math.isfinite(saved):
            ax.plot(
                seg.resumed_step,
                saved,
                "s",
                color=STOP,
                mfc="white",
                mew=2,
                markersize=7,
                zorder=6,
                label=once("saved"),
            )
        if seg.resumed_step is not None and is_number(resumed) and math.isfinite(resumed):
            xs, ys = [seg.resumed_step, *xs], [float(resumed), *ys]
            ax.plot(
                seg.resumed_step,
                resumed,
                "D",
                color=RESUME,
                mfc="white",
                mew=2,
                markersize=8,
                zorder=7,
                label=once("resumed"),
            )
        colour, name = (STOP, "stop") if seg.resumed_step is None else (GO, "go (after a resume)")
        if xs:
            ax.plot(xs, ys, color=colour, marker="o", markersize=3, linewidth=1.8, label=once(name), zorder=3)
        if seg.killed and xs:
            ax.plot(xs[-1], ys[-1], "x", color=KILL, markersize=10, mew=2.5, zorder=5, label=once("kill point"))
            ax.axvline(xs[-1], color=KILL, linestyle="--", linewidth=1.2, label=once("kill"))
        if seg.resumed_step is not None:
            ax.axvline(seg.resumed_step, color=RESUME, linestyle=":", linewidth=1.2, label=once("resume"))
    if diverge is not None:
        ax.axvspan(diverge - 0.5, diverge + 0.5, color=DIVERGE, alpha=0.15, label=f"first divergence (step {diverge})")
    ax.set_title(f"{metric} (rank {rank})", fontsize=10, loc="left")
    ax.set_xlabel("step")
    ax.grid(True, color="#e5e7eb")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
