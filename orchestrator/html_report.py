"""``--html-report``: one self-contained HTML file a person can look at.

Per metric, the continuous reference trajectory and the stop+go trajectory are drawn
overlaid as inline SVG, with the kill point, the resume point and the first divergent
step marked, and a strip of per-step match cells under each chart (a float that differs
by 1e-5 is invisible in a line but not in the strip). Metrics that are not numbers
(digests, strings) get the strip alone. Everything (CSS, SVG, a few lines of JS to pick
the rank) is inline: the file opens offline.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any

from orchestrator.compare import tolerance_for, values_match
from orchestrator.run_data import (
    MISMATCH,
    NONDETERMINISTIC,
    OK,
    MetricRow,
    RunTrajectories,
    Segment,
    collapse_ranks,
    divergence_sentence,
    first_divergences,
    is_number,
    load_trajectories,
    metric_rows,
    rank_label,
    short,
)

# Chart geometry (SVG user units; the SVG scales to the page width).
WIDTH, HEIGHT = 880, 250
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 34, 34
STRIP_ROW = 16
MAX_MARKERS = 80  # draw a dot per point only when there are this few
SHOWN_DIFFERENCES = 8  # more go behind a "more" toggle
MAX_DIFFERENCES = 500
HEADLINE = ("train_loss", "val_loss", "learning_rate", "global_step")

COLOURS = {
    "reference": "#94a3b8",
    "stop": "#2563eb",
    "go": "#ea580c",
    "kill": "#dc2626",
    "resume": "#16a34a",
    "diverge": "#dc2626",
    "match": "#86efac",
    "differ": "#f87171",
    "absent": "#e5e7eb",
}


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
    parts = [
        _header(report, data),
        _phases(report),
        _overview(rows),
        _differences(report),
        _trajectories(data, rows, tolerances),
    ]
    title = f"stop-and-go: {Path(report.get('spec') or '?').name} — {_verdict_word(report)}"
    return _PAGE.format(
        title=_e(title),
        css=_CSS,
        js=_JS,
        body="\n".join(p for p in parts if p),
        generated=_e(time.strftime("%Y-%m-%d %H:%M:%S")),
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


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
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    return (
        f'<header class="{_verdict_class(report)}">'
        f'<div class="badge">{_e(_verdict_word(report).upper())}</div>'
        f"<h1>stop-and-go report</h1>"
        f'<p class="message">{_e(report.get("message", ""))} '
        f'<span class="code">exit {_e(report.get("exit_code"))}</span></p>'
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
        kill = '<span class="kill-mark" title="killed">✕</span>' if p.get("kill") and p["name"] == "stop" else ""
        bars.append(
            f'<div class="bar {_e(p["name"])}" style="width:{share:.2f}%" '
            f'title="{_e(p["name"])}: {p.get("wall_s", 0):.1f} s, {_e(p.get("outcome"))}">'
            f"<span>{_e(p['name'])} {p.get('wall_s', 0):.1f}s</span>{kill}</div>"
        )
    rows = "".join(
        "<tr>"
        f"<td>{_e(p['name'])}</td><td>{p.get('wall_s', 0):.1f} s</td><td>{_e(p.get('exit_code'))}</td>"
        f"<td>{_e(p.get('outcome'))}{_kill_note(p)}</td><td><code>{_e(p.get('log', ''))}</code></td>"
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
    return f"; {_e(kill.get('signal'))} to {len(kill.get('pids', []))} processes"


def _overview(rows: list[MetricRow]) -> str:
    if not rows:
        return ""
    body = []
    for r in collapse_ranks(rows):
        body.append(
            f'<tr class="{_e(r.status)}"><td><a href="#metric-{_e(r.metric)}">{_e(r.metric)}</a></td>'
            f"<td>{_e(rank_label(r.rank))}</td><td>{_e(short(r.saved))}</td><td>{_e(short(r.resumed))}</td>"
            f"<td>{_e(short(r.reference))}</td>"
            f'<td><span class="chip {_e(r.status)}">{_e(r.verdict_text)}</span></td></tr>'
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
    body = "".join(f"<li>{_e(f)}</li>" for f in shown)
    if rest:
        hidden = "".join(f"<li>{_e(f)}</li>" for f in rest)
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
    chip = f'<span class="chip {_e(status)}">{_e(first.verdict_text if first else status or "not checked")}</span>'
    note = f'<p class="divergence">{_e(divergence_sentence(first))}</p>' if first else ""
    views = []
    for i, rank in enumerate(ranks):
        row = next((r for r in rows if r.metric == metric and r.rank == rank), None)
        views.append(
            f'<div class="rank-view{" active" if i == 0 else ""}" data-rank="{rank}">'
            f"{_chart(data, metric, rank, row, tolerance_for(metric, tolerances))}</div>"
        )
    return (
        f'<article class="metric" id="metric-{_e(metric)}"><h3>{_e(metric)} {chip}</h3>{note}'
        + "".join(views)
        + "</article>"
    )


# -- charts -------------------------------------------------------------------------


class _Scale:
    """Maps data coordinates to SVG coordinates."""

    def __init__(self, lo: float, hi: float, out_lo: float, out_hi: float) -> None:
        self.lo, self.hi, self.out_lo, self.out_hi = lo, hi, out_lo, out_hi

    def __call__(self, value: float) -> float:
        if self.hi == self.lo:
            return (self.out_lo + self.out_hi) / 2
        return self.out_lo + (value - self.lo) * (self.out_hi - self.out_lo) / (self.hi - self.lo)


def _nice_ticks(lo: float, hi: float, count: int = 5) -> tuple[float, float, list[float]]:
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start, end = math.floor(lo / step) * step, math.ceil(hi / step) * step
    ticks = [start + i * step for i in range(round((end - start) / step) + 1)]
    return start, end, ticks


def _step_ticks(lo: int, hi: int) -> list[int]:
    if hi - lo <= 16:
        return list(range(lo, hi + 1))
    _, _, ticks = _nice_ticks(lo, hi, 8)
    return sorted({round(t) for t in ticks if lo <= t <= hi})


def _cell(x: _Scale, step: int) -> float:
    """The width of one step's cell."""
    return x(step + 0.5) - x(step - 0.5)


def _fmt(value: Any) -> str:
    if is_number(value):
        return f"{value:.6g}"
    return short(value, 40)


def _finite(points: list[tuple[int, Any]]) -> list[tuple[int, float]]:
    return [(s, float(v)) for s, v in points if is_number(v) and math.isfinite(v)]


def _chart(data: RunTrajectories, metric: str, rank: int, row: MetricRow | None, tolerance: tuple[float, float]) -> str:
    reference = data.series(data.reference, rank, metric)
    segments = [(seg, data.series(seg.steps, rank, metric)) for seg in data.segments]
    marks = [
        (seg.resumed_step, seg.resumed[rank][metric])
        for seg in data.segments
        if seg.resumed_step is not None and metric in seg.resumed.get(rank, {})
    ]
    all_points = reference + [p for _, points in segments for p in points] + marks
    if not all_points:
        return f'<p class="hint">rank {rank} recorded no {_e(metric)}.</p>'
    steps = [s for s, _ in all_points]
    x = _Scale(min(steps) - 0.5, max(steps) + 0.5, LEFT, WIDTH - RIGHT)
    diverge_step = row.first_divergent_step if row and row.status in (MISMATCH, NONDETERMINISTIC) else None
    plotted = bool(_finite(all_points)) and all(is_number(v) for _, v in all_points)
    parts: list[str] = []
    height = 0
    if plotted:
        height = HEIGHT
        parts.append(_line_plot(x, reference, segments, data, diverge_step, metric, rank))
    strip, strip_h = _strip(x, reference, segments, data, metric, rank, diverge_step, tolerance, height)
    parts.append(strip)
    label = "trajectories and per-step match with the reference" if plotted else "per-step match with the reference"
    return (
        f'<svg viewBox="0 0 {WIDTH} {height + strip_h:.0f}" role="img" '
        f'aria-label="{_e(metric)} rank {rank}: {_e(label)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(parts)
        + "</svg>"
    )


class _Labels:
    """Places labels beside vertical lines, each in the first row where it overlaps nothing."""

    ROWS = (TOP - 4, TOP + 10, TOP + 24, TOP + 38)
    CHAR_W = 7.0  # an 11px bold character, roughly

    def __init__(self) -> None:
        # The "rank N" title holds the top right corner.
        self.taken: list[tuple[float, float, int]] = [(WIDTH - RIGHT - 50, WIDTH, 0)]

    def place(self, line_x: float, text: str, css: str) -> str:
        width = self.CHAR_W * len(text)
        start = line_x + 4
        if start + width > WIDTH - RIGHT:  # no room on the right: put it left of the line
            start = line_x - 4 - width
        row = next(
            (
                r
                for r in range(len(self.ROWS))
                if all(r != taken_row or start >= end or start + width <= begin for begin, end, taken_row in self.taken)
            ),
            len(self.ROWS) - 1,
        )
        self.taken.append((start, start + width, row))
        return f'<text x="{start:.1f}" y="{self.ROWS[row]}" class="{css}" text-anchor="start">{_e(text)}</text>'


def _polyline(x: _Scale, y: _Scale, points: list[tuple[int, float]], colour: str, width: float, extra: str = "") -> str:
    if len(points) < 2:
        return ""
    coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
    return (
        f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="{width}" '
        f'stroke-linejoin="round" stroke-linecap="round" {extra}/>'
    )


def _number(value: Any) -> float | None:
    return float(value) if is_number(value) and math.isfinite(value) else None


def _line_plot(
    x: _Scale,
    reference: list[tuple[int, Any]],
    segments: list[tuple[Segment, list[tuple[int, Any]]]],
    data: RunTrajectories,
    diverge_step: int | None,
    metric: str,
    rank: int,
) -> str:
    ref = _finite(reference)
    values = [v for _, v in ref]
    for seg, points in segments:
        values += [v for _, v in _finite(points)]
        for extra in (seg.saved.get(rank, {}).get(metric), seg.resumed.get(rank, {}).get(metric)):
            if _number(extra) is not None:
                values.append(float(extra))
    lo, hi, ticks = _nice_ticks(min(values), max(values))
    y = _Scale(lo, hi, HEIGHT - BOTTOM, TOP)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = [f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>']
    for t in ticks:
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(t):.1f}" y2="{y(t):.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y(t) + 4:.1f}" class="tick" text-anchor="end">{_e(f"{t:.4g}")}</text>'
        )
    for s in _step_ticks(round(x.lo + 0.5), round(x.hi - 0.5)):
        out.append(f'<text x="{x(s):.1f}" y="{HEIGHT - BOTTOM + 16}" class="tick" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" class="axis" text-anchor="end">step</text>')
    out.append(f'<text x="{WIDTH - RIGHT}" y="{TOP - 4}" class="axis" text-anchor="end">rank {rank}</text>')
    if diverge_step is not None:
        out.append(
            f'<rect x="{x(diverge_step - 0.5):.1f}" y="{TOP}" width="{_cell(x, diverge_step):.1f}" '
            f'height="{plot_h}" class="diverge-band"><title>first divergent step {diverge_step}</title></rect>'
        )
    out.append(_polyline(x, y, ref, COLOURS["reference"], 7, 'opacity="0.6"'))
    reference_at = dict(ref)
    if len(ref) <= MAX_MARKERS:
        for s, v in ref:
            out.append(
                f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="5" fill="{COLOURS["reference"]}" opacity="0.5">'
                f"<title>reference, step {s}: {_e(_fmt(v))}</title></circle>"
            )
    labels = _Labels()
    previous_end: tuple[int, float] | None = None
    for seg, raw in segments:
        points = _finite(raw)
        colour = COLOURS["stop"] if seg.resumed_step is None else COLOURS["go"]
        saved = _number(seg.saved.get(rank, {}).get(metric))
        resumed = _number(seg.resumed.get(rank, {}).get(metric))
        if seg.resumed_step is not None and resumed is not None:
            if previous_end is not None:  # the restart: from where the last phase died to the restored value
                out.append(
                    _polyline(
                        x,
                        y,
                        [previous_end, (seg.resumed_step, resumed)],
                        COLOURS["resume"],
                        1.5,
                        'stroke-dasharray="3 3"',
                    )
                )
            points = [(seg.resumed_step, resumed), *points]
        out.append(_polyline(x, y, points, colour, 2))
        if len(points) <= MAX_MARKERS:
            for s, v in points:
                out.append(
                    f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="2.6" fill="{colour}">'
                    f"<title>{_e(seg.label)}, step {s}: {_e(_fmt(v))} "
                    f"(reference {_e(_fmt(reference_at.get(s)))})</title></circle>"
                )
        if seg.resumed_step is not None:
            rx = x(seg.resumed_step)
            out.append(labels.place(rx, f"{seg.label}: resume from step {seg.resumed_step}", "resume-label"))
            if saved is not None:
                sx, sy = x(seg.resumed_step), y(saved)
                out.append(
                    f'<rect x="{sx - 5:.1f}" y="{sy - 5:.1f}" width="10" height="10" class="saved-mark">'
                    f"<title>saved with the checkpoint of step {seg.resumed_step}: {_e(_fmt(saved))}</title></rect>"
                )
            if resumed is not None:
                ry = y(resumed)
                out.append(
                    f'<path d="M{rx:.1f},{ry - 7:.1f} L{rx + 7:.1f},{ry:.1f} L{rx:.1f},{ry + 7:.1f} '
                    f'L{rx - 7:.1f},{ry:.1f} Z" class="resume-mark">'
                    f"<title>{_e(seg.label)} resumed at step {seg.resumed_step}: {_e(_fmt(resumed))}</title></path>"
                )
        if seg.killed and points:
            kill_s, kill_v = points[-1]
            kx = x(kill_s)
            out.append(
                f'<line x1="{kx:.1f}" x2="{kx:.1f}" y1="{TOP - 14}" y2="{HEIGHT - BOTTOM}" class="kill-line"/>'
                + labels.place(kx, f"{seg.label} killed after step {kill_s}", "kill-label")
                + f'<text x="{kx:.1f}" y="{y(kill_v) + 5:.1f}" class="kill-x" text-anchor="middle">✕'
                f"<title>{_e(seg.label)} killed after step {kill_s}: {_e(_fmt(kill_v))}</title></text>"
            )
            previous_end = (kill_s, kill_v)
    if diverge_step is not None:
        point = next((p for _, raw in segments for p in _finite(raw) if p[0] == diverge_step), None)
        point = point or next(
            ((s, float(v)) for s, v in _resumed_marks(segments, rank, metric) if s == diverge_step), None
        )
        if point is not None:
            out.append(
                f'<circle cx="{x(point[0]):.1f}" cy="{y(point[1]):.1f}" r="9" class="diverge-ring">'
                f"<title>first divergent step {diverge_step}: {_e(_fmt(point[1]))} "
                f"(reference {_e(_fmt(reference_at.get(diverge_step)))})</title></circle>"
            )
        bx, anchor = x(diverge_step + 0.5) + 4, "start"
        if bx > WIDTH - RIGHT - 150:
            bx, anchor = x(diverge_step - 0.5) - 4, "end"
        out.append(
            f'<text x="{bx:.1f}" y="{HEIGHT - BOTTOM - 8}" class="diverge-label" text-anchor="{anchor}">'
            f"first divergence: step {diverge_step}</text>"
        )
    return "".join(out)


def _resumed_marks(
    segments: list[tuple[Segment, list[tuple[int, Any]]]], rank: int, metric: str
) -> list[tuple[int, Any]]:
    return [
        (seg.resumed_step, seg.resumed[rank][metric])
        for seg, _ in segments
        if seg.resumed_step is not None and _number(seg.resumed.get(rank, {}).get(metric)) is not None
    ]


def _strip(
    x: _Scale,
    reference: list[tuple[int, Any]],
    segments: list[tuple[Segment, list[tuple[int, Any]]]],
    data: RunTrajectories,
    metric: str,
    rank: int,
    diverge_step: int | None,
    tolerance: tuple[float, float],
    top: float,
) -> tuple[str, float]:
    """Per-step cells: the reference's row, then one row per phase, coloured by its match.

    A resumed phase's row starts with a cell at the step it resumed from: the resume
    check (the restored value against the one saved with the checkpoint).
    """
    ref = dict(reference)
    y0 = top + 8
    out = [f'<text x="{LEFT - 6}" y="{y0 + 12}" class="tick" text-anchor="end">reference</text>']
    for s, value in reference:
        out.append(
            f'<rect x="{x(s - 0.5) + 1:.1f}" y="{y0}" width="{max(_cell(x, s) - 2, 1):.1f}" height="{STRIP_ROW}" '
            f'fill="{COLOURS["reference"]}"><title>reference, step {s}: {_e(_fmt(value))}</title></rect>'
        )
    row_y = y0
    for seg, points in segments:
        row_y += STRIP_ROW + 4
        out.append(f'<text x="{LEFT - 6}" y="{row_y + 12}" class="tick" text-anchor="end">{_e(seg.label)}</text>')
        cells = []
        if seg.resumed_step is not None and metric in seg.resumed.get(rank, {}):
            saved, resumed = seg.saved.get(rank, {}).get(metric), seg.resumed[rank][metric]
            ok = values_match(saved, resumed, *tolerance)
            cells.append(
                (seg.resumed_step, "match" if ok else "differ", f"resumed {_fmt(resumed)}, saved {_fmt(saved)}", True)
            )
        for s, value in points:
            if s not in ref:
                cells.append((s, "absent", f"{_fmt(value)} (the reference has no step {s})", False))
            elif values_match(ref[s], value, *tolerance):
                cells.append((s, "match", f"{_fmt(value)} matches the reference", False))
            else:
                cells.append((s, "differ", f"{_fmt(value)} DIFFERS from the reference {_fmt(ref[s])}", False))
        for s, colour, text, is_resume in cells:
            cls = ' class="resume-cell"' if is_resume else ""
            what = f"{seg.label}, resume check at step {s}" if is_resume else f"{seg.label}, step {s}"
            out.append(
                f'<rect x="{x(s - 0.5) + 1:.1f}" y="{row_y}" width="{max(_cell(x, s) - 2, 1):.1f}" '
                f'height="{STRIP_ROW}" fill="{COLOURS[colour]}"{cls}><title>{_e(what)}: {_e(text)}</title></rect>'
            )
    bottom = row_y + STRIP_ROW
    for seg in data.segments:
        last = seg.last_step()
        if seg.killed and last is not None:
            kx = x(last + 0.5)
            out.append(f'<line x1="{kx:.1f}" x2="{kx:.1f}" y1="{y0 - 4}" y2="{bottom + 4}" class="kill-line"/>')
    if diverge_step is not None:
        out.append(
            f'<rect x="{x(diverge_step - 0.5):.1f}" y="{y0 - 3}" width="{_cell(x, diverge_step):.1f}" '
            f'height="{bottom - y0 + 6}" class="diverge-box"/>'
        )
    height = bottom - top + 10
    if not top:
        # A strip alone (not numbers): label its steps.
        steps = sorted(set(ref) | {s for _, points in segments for s, _ in points})
        for s in _step_ticks(steps[0], steps[-1]) if steps else []:
            out.append(f'<text x="{x(s):.1f}" y="{bottom + 14}" class="tick" text-anchor="middle">{s}</text>')
        height += 14
    return "".join(out), height


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style></head>
<body><main>
{body}
<footer>stop-and-go · generated {generated} · self-contained: no network needed</footer>
</main><script>{js}</script></body></html>
"""

_CSS = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1f2937; }
body { margin: 0; background: #f8fafc; }
main { max-width: 980px; margin: 0 auto; padding: 24px; }
header { border-radius: 10px; padding: 18px 22px; color: #fff; position: relative; }
header.pass { background: linear-gradient(135deg, #15803d, #16a34a); }
header.fail { background: linear-gradient(135deg, #b91c1c, #dc2626); }
header.error { background: linear-gradient(135deg, #b45309, #d97706); }
header h1 { margin: 0 0 6px; font-size: 20px; font-weight: 600; opacity: .9; }
header .badge { float: right; font-weight: 800; letter-spacing: .06em; font-size: 22px;
  border: 2px solid rgba(255,255,255,.8); border-radius: 8px; padding: 6px 14px; }
header .message { margin: 4px 0 12px; font-size: 15px; word-break: break-word; }
header .code { background: rgba(0,0,0,.2); border-radius: 4px; padding: 1px 6px; font-size: 13px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 0; font-size: 13px; }
dl.facts dt { opacity: .85; } dl.facts dd { margin: 0; word-break: break-all; font-family: ui-monospace, monospace; }
section { background: #fff; border: 1px solid #e2e8f0; border-radius: 10px; padding: 14px 20px; margin-top: 18px; }
h2 { font-size: 17px; margin: 2px 0 10px; }
h3 { font-size: 15px; margin: 0 0 4px; font-family: ui-monospace, monospace; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef2f7; }
td { font-family: ui-monospace, monospace; word-break: break-all; }
th { color: #64748b; font-weight: 600; }
tr.mismatch td, tr.nondeterministic td { background: #fef2f2; }
.chip { display: inline-block; border-radius: 999px; padding: 1px 9px; font-size: 12px; font-weight: 600;
  font-family: system-ui, sans-serif; background: #f1f5f9; color: #475569; white-space: nowrap; }
.chip.ok { background: #dcfce7; color: #166534; }
.chip.mismatch, .chip.nondeterministic { background: #fee2e2; color: #991b1b; }
.hint { color: #64748b; font-size: 12px; margin: 0 0 8px; }
.timeline { display: flex; height: 30px; border-radius: 6px; overflow: hidden; margin-bottom: 10px; }
.timeline .bar { position: relative; color: #fff; font-size: 12px; display: flex; align-items: center;
  padding-left: 8px; white-space: nowrap; overflow: hidden; border-right: 2px solid #fff; }
.timeline .stop { background: #2563eb; } .timeline .go { background: #ea580c; }
.timeline .continuous { background: #94a3b8; }
.timeline .kill-mark { position: absolute; right: 6px; font-weight: 800; color: #fee2e2; }
ul.failures { font-family: ui-monospace, monospace; font-size: 12px; padding-left: 18px; margin: 0; }
ul.failures li { margin: 2px 0; word-break: break-word; }
ul.failures summary { cursor: pointer; color: #475569; font-family: system-ui, sans-serif; }
ul.failures ul { padding-left: 0; list-style: none; }
.ranks { font-size: 13px; margin-bottom: 8px; }
.ranks button { border: 1px solid #cbd5e1; background: #fff; border-radius: 6px; padding: 3px 10px;
  margin-right: 4px; cursor: pointer; font-size: 13px; }
.ranks button.active { background: #1e293b; color: #fff; border-color: #1e293b; }
.ranks button.bad::after { content: " ●"; color: #dc2626; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; font-size: 12px; color: #475569; margin-bottom: 6px; }
.legend i { display: inline-block; width: 22px; height: 3px; vertical-align: middle; margin-right: 6px;
  border-radius: 2px; }
.legend b { margin-right: 5px; }
article.metric { border-top: 1px solid #eef2f7; padding-top: 12px; margin-top: 12px; }
p.divergence { font-family: ui-monospace, monospace; font-size: 12px; color: #991b1b; margin: 2px 0 4px;
  word-break: break-word; }
.rank-view { display: none; } .rank-view.active { display: block; }
svg { width: 100%; height: auto; display: block; }
svg .plot { fill: #fcfdfe; stroke: #e2e8f0; }
svg .grid { stroke: #eef2f7; }
svg .tick { font-size: 11px; fill: #64748b; }
svg .axis { font-size: 12px; fill: #334155; font-weight: 600; }
svg .kill-line { stroke: #dc2626; stroke-dasharray: 5 4; stroke-width: 1.5; }
svg .kill-label { font-size: 11px; fill: #dc2626; font-weight: 600; }
svg .kill-x { font-size: 15px; fill: #dc2626; font-weight: 800; }
svg .resume-label { font-size: 11px; fill: #15803d; font-weight: 600; }
svg .saved-mark { fill: #fff; stroke: #2563eb; stroke-width: 2.5; }
svg .resume-mark { fill: #fff; stroke: #16a34a; stroke-width: 2.5; }
svg .diverge-band { fill: #dc2626; opacity: .14; }
svg .diverge-ring { fill: none; stroke: #dc2626; stroke-width: 2.5; }
svg .diverge-label { font-size: 12px; fill: #b91c1c; font-weight: 700; }
svg text { paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
svg .diverge-box { fill: none; stroke: #dc2626; stroke-width: 2; }
svg .resume-cell { stroke: #16a34a; stroke-width: 2; }
footer { color: #94a3b8; font-size: 12px; text-align: center; margin: 18px 0 4px; }
"""

# Picks the rank shown by every chart; without JS, rank 0 is shown.
_JS = """
document.querySelectorAll('.ranks button').forEach(function (button) {
  button.addEventListener('click', function () {
    var rank = button.getAttribute('data-rank');
    document.querySelectorAll('.ranks button').forEach(function (b) {
      b.classList.toggle('active', b === button);
    });
    document.querySelectorAll('.rank-view').forEach(function (view) {
      view.classList.toggle('active', view.getAttribute('data-rank') === rank);
    });
  });
});
"""
