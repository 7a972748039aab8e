"""``--html-report``: one self-contained HTML file a person can look at.

Per metric, the continuous reference trajectory and the stop+go trajectory are drawn
overlaid as inline SVG, with the kill point, the resume point and the first divergent
step marked, and a strip of per-step match cells under each chart (a float that differs
by 1e-5 is invisible in a line but not in the strip). Metrics that are not numbers
(digests, strings) get the strip alone. Everything (CSS, SVG, a few lines of JS to pick
the rank) is inline: the file opens offline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from orchestrator.judge.compare import tolerance_for
from orchestrator.report.html_assets import CSS, JS, PAGE
from orchestrator.report.html_charts import COLOURS, chart, escape
from orchestrator.report.html_first import around_resumes, root_cause
from orchestrator.report.run_data import (
    MISMATCH,
    NONDETERMINISTIC,
    OK,
    MetricRow,
    RunTrajectories,
    collapse_ranks,
    divergence_sentence,
    first_divergences,
    load_trajectories,
    metric_rows,
    rank_label,
    short,
)

SHOWN_DIFFERENCES = 8  # more go behind a "more" toggle
MAX_DIFFERENCES = 500
HEADLINE = ("train_loss", "val_loss", "learning_rate", "global_step")


def write_html_report(report: dict[str, Any], path: str | Path) -> Path:
    """Writes the HTML report of a finished run (``report`` is ``report_dict``'s output)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(report), encoding="utf-8")
    return target


def render_html(report: dict[str, Any], trajectories: RunTrajectories | None = None) -> str:
    """The whole HTML document as a string."""
    data = trajectories if trajectories is not None else load_trajectories(report)
    rows = metric_rows(report, data)
    tolerances = _tolerances(report)
    parts = [  # the first screen: the verdict, its root cause, the resume points zoomed
        _header(report, data),
        root_cause(report),
        around_resumes(data, rows, tolerances),
        _phases(report),
        _overview(rows),
        _differences(report),
        _trajectories(data, rows, tolerances),
    ]
    title = f"stop-and-go: {Path(report.get('spec') or '?').name} — {_verdict_word(report)}"
    return PAGE.format(
        title=escape(title),
        css=CSS,
        js=JS,
        body="\n".join(p for p in parts if p),
        generated=escape(time.strftime("%Y-%m-%d %H:%M:%S")),
    )


def _tolerances(report: dict[str, Any]) -> dict[str, list[float]]:
    merged: dict[str, list[float]] = {}
    for phase in report.get("phases", []):
        for result in phase.get("results", []):
            merged.update(result.get("tolerances") or {})
    return merged


# The badge: a few words per exit code (the full meaning is in the message line).
BADGES = {
    0: "resume verified",
    1: "resume mismatch",
    2: "bad spec",
    3: "stop failed",
    4: "go failed",
    5: "timeout",
    6: "reference failed",
    7: "run dir unusable",
    8: "GPU not released",
    9: "not deterministic",
    10: "no checkpoint",
    11: "node lost",
    70: "internal error",
    130: "interrupted",
}


def _verdict_word(report: dict[str, Any]) -> str:
    return BADGES.get(report.get("exit_code"), f"exit {report.get('exit_code')}")


def _verdict_class(report: dict[str, Any]) -> str:
    return {0: "pass", 1: "fail"}.get(report.get("exit_code"), "error")


# -- page sections ------------------------------------------------------------------


def _header(report: dict[str, Any], data: RunTrajectories) -> str:
    facts = [
        ("spec", report.get("spec")),
        ("harness", report.get("harness") or "-"),
        ("workers", f"{report.get('nproc_per_node')} per node, world size {data.world_size}"),
        ("kill signal", report.get("kill_signal") or "-"),
        ("checkpoint step (kill / resume)", data.resume_step if data.resume_step is not None else "-"),
        ("sentinel → all stop processes dead", _seconds(report.get("sentinel_to_all_dead_s"))),
        ("run dir", report.get("run_dir")),
    ]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    return (
        f'<header class="{_verdict_class(report)}">'
        f'<div class="badge">{escape(_verdict_word(report).upper())}</div>'
        f"<h1>stop-and-go report</h1>"
        f'<p class="message">{escape(report.get("message", ""))} '
        f'<span class="code">exit {escape(report.get("exit_code"))}</span></p>'
        f'<dl class="facts">{items}</dl></header>'
    )


def _seconds(value: Any) -> str:
    return f"{value:.3f} s" if isinstance(value, (int, float)) else "-"


def _phases(report: dict[str, Any]) -> str:
    phases = report.get("phases", [])
    if not phases:
        return ""
    total = sum(max(p.get("wall_s") or 0.0, 0.01) for p in phases)
    bars = []
    for p in phases:
        share = 100.0 * max(p.get("wall_s") or 0.0, 0.01) / total
        kill = '<span class="kill-mark" title="killed">✕</span>' if p.get("kill") else ""
        # go1 ... goN (--cycles) are resumed phases too: coloured as go, killed ones darker.
        kind = "go" if p["name"].startswith("go") else p["name"]
        bars.append(
            f'<div class="bar {escape(kind)}{" killed" if p.get("kill") else ""}" style="width:{share:.2f}%" '
            f'title="{escape(p["name"])}: {p.get("wall_s", 0):.1f} s, {escape(p.get("outcome"))}">'
            f"<span>{escape(p['name'])} {p.get('wall_s', 0):.1f}s</span>{kill}</div>"
        )
    rows = "".join(
        "<tr>"
        f"<td>{escape(p['name'])}</td><td>{p.get('wall_s', 0):.1f} s</td><td>{escape(p.get('exit_code'))}</td>"
        f"<td>{escape(p.get('outcome'))}{_kill_note(p)}</td><td><code>{escape(p.get('log', ''))}</code></td>"
        "</tr>"
        for p in phases
    )
    return (
        '<section><h2>Phases</h2><div class="timeline">' + "".join(bars) + "</div>"
        "<table><thead><tr><th>phase</th><th>wall</th><th>exit</th><th>outcome</th><th>log</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _kill_note(phase: dict[str, Any]) -> str:
    kill = phase.get("kill")
    if not kill:
        return ""
    return f"; {escape(kill.get('signal'))} to {len(kill.get('pids', []))} processes"


def _overview(rows: list[MetricRow]) -> str:
    if not rows:
        return ""
    body = []
    for r in collapse_ranks(rows):
        body.append(
            f'<tr class="{escape(r.status)}"><td><a href="#metric-{escape(r.metric)}">{escape(r.metric)}</a></td>'
            f"<td>{escape(rank_label(r.rank))}</td><td>{escape(short(r.saved))}</td><td>{escape(short(r.resumed))}</td>"
            f"<td>{escape(short(r.reference))}</td>"
            f'<td><span class="chip {escape(r.status)}">{escape(r.verdict_text)}</span></td></tr>'
        )
    return (
        "<section><h2>Metrics</h2>"
        '<p class="hint">saved: at the stop checkpoint · resumed: right after go restored it · '
        "reference: the continuous run at the same step (its trajectory)</p>"
        "<table><thead><tr><th>metric</th><th>rank</th><th>saved</th><th>resumed</th><th>reference</th>"
        f"<th>verdict</th></tr></thead><tbody>{''.join(body)}</tbody></table></section>"
    )


def _differences(report: dict[str, Any]) -> str:
    failures = (report.get("verdict") or {}).get("failures") or []
    if not failures and report.get("exit_code") in (0, 1):
        return ""
    if not failures:
        failures = [str(report.get("message", ""))]
    shown, rest = failures[:SHOWN_DIFFERENCES], failures[SHOWN_DIFFERENCES:MAX_DIFFERENCES]
    body = "".join(f"<li>{escape(f)}</li>" for f in shown)
    if rest:
        hidden = "".join(f"<li>{escape(f)}</li>" for f in rest)
        more = (
            f" (the first {MAX_DIFFERENCES} of {len(failures)}; all in report.json)"
            if len(failures) > MAX_DIFFERENCES
            else ""
        )
        body += (
            f"<li><details><summary>{len(failures) - len(shown)} more{more}</summary><ul>{hidden}</ul></details></li>"
        )
    return f'<section><h2>Differences</h2><ul class="failures">{body}</ul></section>'


def _trajectories(data: RunTrajectories, rows: list[MetricRow], tolerances: dict[str, list[float]]) -> str:
    metrics = data.metrics()
    if not metrics:
        return '<section><h2>Trajectories</h2><p class="hint">No trajectory was recorded.</p></section>'
    ranks = data.ranks() or [0]
    bad_ranks = {r.rank for r in rows if r.status in (MISMATCH, NONDETERMINISTIC)}
    buttons = "".join(
        f'<button type="button" data-rank="{rank}" class="{"active" if i == 0 else ""}'
        f'{" bad" if rank in bad_ranks else ""}">rank {rank}</button>'
        for i, rank in enumerate(ranks)
    )
    first = {r.metric: r for r in first_divergences(rows)}
    # Divergent metrics first (earliest first), then the ones a person looks at first.
    order = sorted(
        metrics,
        key=lambda m: (
            m not in first,
            first[m].first_divergent_step if m in first else 0,
            HEADLINE.index(m) if m in HEADLINE else len(HEADLINE),
            m,
        ),
    )
    cards = [_metric_card(data, m, ranks, rows, first.get(m), tolerances) for m in order]
    legend = (
        '<div class="legend">'
        f'<span><i style="background:{COLOURS["reference"]};height:6px"></i>continuous reference</span>'
        f'<span><i style="background:{COLOURS["stop"]}"></i>stop</span>'
        f'<span><i style="background:{COLOURS["go"]}"></i>go (after the resume)</span>'
        f'<span><b style="color:{COLOURS["kill"]}">✕</b> kill point</span>'
        f'<span><b style="color:{COLOURS["stop"]}">□</b> saved at the checkpoint</span>'
        f'<span><b style="color:{COLOURS["resume"]}">◆</b> resume point (value right after restore)</span>'
        f'<span><i style="background:{COLOURS["diverge"]};opacity:.25;height:12px"></i>first divergent step</span>'
        "</div>"
    )
    return (
        '<section><h2>Trajectories</h2><div class="ranks">show: ' + buttons + "</div>" + legend + "".join(cards)
    ) + "</section>"


def _metric_card(
    data: RunTrajectories,
    metric: str,
    ranks: list[int],
    rows: list[MetricRow],
    first: MetricRow | None,
    tolerances: dict[str, list[float]],
) -> str:
    status = first.status if first else (OK if any(r.metric == metric and r.status == OK for r in rows) else "")
    chip_text = first.verdict_text if first else status or "not checked"
    chip = f'<span class="chip {escape(status)}">{escape(chip_text)}</span>'
    note = f'<p class="divergence">{escape(divergence_sentence(first))}</p>' if first else ""
    views = []
    for i, rank in enumerate(ranks):
        row = next((r for r in rows if r.metric == metric and r.rank == rank), None)
        views.append(
            f'<div class="rank-view{" active" if i == 0 else ""}" data-rank="{rank}">'
            f"{chart(data, metric, rank, row, tolerance_for(metric, tolerances))}</div>"
        )
    return (
        f'<article class="metric" id="metric-{escape(metric)}"><h3>{escape(metric)} {chip}</h3>{note}'
        + "".join(views)
        + "</article>"
    )
