"""The inline SVG charts of the HTML report: a line plot per metric and rank, and its match strip."""

from __future__ import annotations

import html
import math
from collections import Counter
from itertools import groupby
from typing import Any

from orchestrator.judge.compare import values_match
from orchestrator.report.run_data import (
    MISMATCH,
    NONDETERMINISTIC,
    MetricRow,
    RunTrajectories,
    Segment,
    is_number,
    short,
)

# Chart geometry (SVG user units; the SVG scales to the page width).
WIDTH, HEIGHT = 880, 250
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 34, 34
STRIP_ROW = 16
MAX_MARKERS = 80  # draw a dot per point only when there are this few
# A strip holds at most this many cells: a long run's steps are binned (each bin coloured by
# its worst step), which keeps the page that every run writes small and quick to render.
MAX_CELLS = 240

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


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


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


def chart(
    data: RunTrajectories,
    metric: str,
    rank: int,
    row: MetricRow | None,
    tolerance: tuple[float, float],
    window: tuple[int, int] | None = None,
) -> str:
    """One metric on one rank: reference and stop+go overlaid, then the match strip.

    ``window`` (first, last step) zooms on a few steps, e.g. around a resume point; the
    kill and resume marks of steps outside it are left out.
    """
    reference = _inside(window, data.series(data.reference, rank, metric))
    segments = [(seg, _inside(window, data.series(seg.steps, rank, metric))) for seg in data.segments]
    # Zoomed, a phase with no step and no resume in the window gets no empty strip row.
    segments = [(seg, points) for seg, points in segments if points or _shown(window, seg.resumed_step)]
    marks = [
        (seg.resumed_step, seg.resumed[rank][metric])
        for seg in data.segments
        if _shown(window, seg.resumed_step) and metric in seg.resumed.get(rank, {})
    ]
    all_points = reference + [p for _, points in segments for p in points] + marks
    if not all_points:
        return f'<p class="hint">rank {rank} recorded no {escape(metric)}.</p>'
    steps = [s for s, _ in all_points]
    x = _Scale(min(steps) - 0.5, max(steps) + 0.5, LEFT, WIDTH - RIGHT)
    diverge_step = row.first_divergent_step if row and row.status in (MISMATCH, NONDETERMINISTIC) else None
    if diverge_step is not None and not min(steps) <= diverge_step <= max(steps):
        diverge_step = None
    plotted = bool(_finite(all_points)) and all(is_number(v) for _, v in all_points)
    parts: list[str] = []
    height = 0
    if plotted:
        height = HEIGHT
        parts.append(_line_plot(x, reference, segments, data, diverge_step, metric, rank, window))
    strip, strip_h = _strip(x, reference, segments, data, metric, rank, diverge_step, tolerance, height, window)
    parts.append(strip)
    label = "trajectories and per-step match with the reference" if plotted else "per-step match with the reference"
    return (
        f'<svg viewBox="0 0 {WIDTH} {height + strip_h:.0f}" role="img" '
        f'aria-label="{escape(metric)} rank {rank}: {escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(parts)
        + "</svg>"
    )


def _shown(window: tuple[int, int] | None, step: int | None) -> bool:
    """Whether a mark at ``step`` is drawn (None: there is no such mark)."""
    return step is not None and (window is None or window[0] <= step <= window[1])


def _inside(window: tuple[int, int] | None, points: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    return points if window is None else [(s, v) for s, v in points if window[0] <= s <= window[1]]


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
        return f'<text x="{start:.1f}" y="{self.ROWS[row]}" class="{css}" text-anchor="start">{escape(text)}</text>'


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
    window: tuple[int, int] | None = None,
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
            f'<text x="{LEFT - 6}" y="{y(t) + 4:.1f}" class="tick" text-anchor="end">{escape(f"{t:.4g}")}</text>'
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
                f"<title>reference, step {s}: {escape(_fmt(v))}</title></circle>"
            )
    labels = _Labels()
    previous_end: tuple[int, float] | None = None
    for seg, raw in segments:
        points = _finite(raw)
        colour = COLOURS["stop"] if seg.resumed_step is None else COLOURS["go"]
        saved = _number(seg.saved.get(rank, {}).get(metric))
        resumed = _number(seg.resumed.get(rank, {}).get(metric))
        resume_shown = _shown(window, seg.resumed_step)
        if resume_shown and resumed is not None:
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
                    f"<title>{escape(seg.label)}, step {s}: {escape(_fmt(v))} "
                    f"(reference {escape(_fmt(reference_at.get(s)))})</title></circle>"
                )
        if resume_shown:
            rx = x(seg.resumed_step)
            out.append(labels.place(rx, f"{seg.label}: resume from step {seg.resumed_step}", "resume-label"))
            if saved is not None:
                sx, sy = x(seg.resumed_step), y(saved)
                out.append(
                    f'<rect x="{sx - 5:.1f}" y="{sy - 5:.1f}" width="10" height="10" class="saved-mark">'
                    f"<title>saved with the checkpoint of step {seg.resumed_step}: {escape(_fmt(saved))}</title></rect>"
                )
            if resumed is not None:
                ry = y(resumed)
                out.append(
                    f'<path d="M{rx:.1f},{ry - 7:.1f} L{rx + 7:.1f},{ry:.1f} L{rx:.1f},{ry + 7:.1f} '
                    f'L{rx - 7:.1f},{ry:.1f} Z" class="resume-mark">'
                    f"<title>{escape(seg.label)} resumed at step {seg.resumed_step}: "
                    f"{escape(_fmt(resumed))}</title></path>"
                )
        if seg.killed and points and _shown(window, seg.last_step()):
            kill_s, kill_v = points[-1]
            kx = x(kill_s)
            out.append(
                f'<line x1="{kx:.1f}" x2="{kx:.1f}" y1="{TOP - 14}" y2="{HEIGHT - BOTTOM}" class="kill-line"/>'
                + labels.place(kx, f"{seg.label} killed after step {kill_s}", "kill-label")
                + f'<text x="{kx:.1f}" y="{y(kill_v) + 5:.1f}" class="kill-x" text-anchor="middle">✕'
                f"<title>{escape(seg.label)} killed after step {kill_s}: {escape(_fmt(kill_v))}</title></text>"
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
                f"<title>first divergent step {diverge_step}: {escape(_fmt(point[1]))} "
                f"(reference {escape(_fmt(reference_at.get(diverge_step)))})</title></circle>"
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
    window: tuple[int, int] | None = None,
) -> tuple[str, float]:
    """Per-step cells: the reference's row, then one row per phase, coloured by its match.

    A resumed phase's row starts with a cell at the step it resumed from: the resume
    check (the restored value against the one saved with the checkpoint).
    """
    ref = dict(reference)
    y0 = top + 8
    width = max(1, math.ceil((x.hi - x.lo) / MAX_CELLS))
    out = [f'<text x="{LEFT - 6}" y="{y0 + 12}" class="tick" text-anchor="end">reference</text>']
    out += _row(x, y0, "reference", [(s, "reference", (value,), False) for s, value in reference], width)
    row_y = y0
    for seg, points in segments:
        row_y += STRIP_ROW + 4
        out.append(f'<text x="{LEFT - 6}" y="{row_y + 12}" class="tick" text-anchor="end">{escape(seg.label)}</text>')
        cells = []
        if _shown(window, seg.resumed_step) and metric in seg.resumed.get(rank, {}):
            saved, resumed = seg.saved.get(rank, {}).get(metric), seg.resumed[rank][metric]
            ok = values_match(saved, resumed, *tolerance)
            cells.append((seg.resumed_step, "match" if ok else "differ", (resumed, saved), True))
        for s, value in points:
            if s not in ref:
                cells.append((s, "absent", (value,), False))
            else:
                cells.append(
                    (s, "match" if values_match(ref[s], value, *tolerance) else "differ", (value, ref[s]), False)
                )
        out += _row(x, row_y, seg.label, cells, width)
    bottom = row_y + STRIP_ROW
    for seg in data.segments:
        last = seg.last_step()
        if seg.killed and _shown(window, last):
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


_WORST = {"differ": 3, "absent": 2, "match": 1, "reference": 0}
Cell = tuple[int, str, tuple[Any, ...], bool]  # step, colour, its values, whether it is a resume check


def _cell_text(step: int, colour: str, values: tuple[Any, ...], resume: bool) -> str:
    # Formatted only for the cells drawn: a long run's binned strip reads a few of its values.
    if resume:
        return f"resumed {_fmt(values[0])}, saved {_fmt(values[1])}"
    if colour == "reference":
        return _fmt(values[0])
    if colour == "absent":
        return f"{_fmt(values[0])} (the reference has no step {step})"
    if colour == "match":
        return f"{_fmt(values[0])} matches the reference"
    return f"{_fmt(values[0])} DIFFERS from the reference {_fmt(values[1])}"


def _row(x: _Scale, y: float, label: str, cells: list[Cell], width: int) -> list[str]:
    """One strip row: a cell per step, or per bin of ``width`` steps (its worst step's colour)."""
    # A resume check keeps its own cell; with width > 1 the steps go into bins.
    spans = [(cell[0], cell[0], cell[1], _cell_text(*cell), cell[3]) for cell in cells if width == 1 or cell[3]]
    if width > 1:
        origin = math.floor(x.lo)
        steps = [cell for cell in cells if not cell[3]]  # in step order
        for _, members in groupby(steps, key=lambda cell: (cell[0] - origin) // width):
            group = list(members)
            worst = max(group, key=lambda cell: _WORST[cell[1]])
            kinds = Counter(cell[1] for cell in group) if worst[1] != "match" else {"match": len(group)}
            summary = ", ".join(f"{kinds[kind]} {kind}" for kind in ("differ", "absent", "match") if kinds.get(kind))
            text = f"step {worst[0]}: {_cell_text(*worst)}"
            spans.append((group[0][0], group[-1][0], worst[1], f"{summary}; {text}" if summary else text, False))
    out = []
    for first, last, colour, text, resume in spans:
        cls = ' class="resume-cell"' if resume else ""
        steps = f"step {first}" if first == last else f"steps {first}-{last}"
        what = f"{label}, resume check at {steps}" if resume else f"{label}, {steps}"
        out.append(
            f'<rect x="{x(first - 0.5) + 1:.1f}" y="{y}" width="{max(x(last + 0.5) - x(first - 0.5) - 2, 1):.1f}" '
            f'height="{STRIP_ROW}" fill="{COLOURS[colour]}"{cls}><title>{escape(what)}: {escape(text)}</title></rect>'
        )
    return out
