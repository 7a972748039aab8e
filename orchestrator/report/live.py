"""A live terminal view of a run with ``rich``, and the coloured summary after it.

``LiveEvents`` implements ``RunEvents``: it shows each phase (state, the step of every
rank, elapsed time), the kill and the relaunch as events, and the last lines of worker
output, redrawn a few times a second. After the run, ``print_summary`` prints the phases
and a table of every metric (saved, resumed, reference, verdict) coloured by verdict.

It is used only when stdout is a terminal; ``--plain``, ``--quiet`` or a pipe get the
line-based ``PlainEvents``, which stays readable in CI and Slurm logs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from orchestrator.report.phase_names import legend
from orchestrator.report.readable import cut_long_values
from orchestrator.report.run_data import (
    MISMATCH,
    MISSING,
    NONDETERMINISTIC,
    OK,
    collapse_ranks,
    divergence_sentence,
    first_divergences,
    metric_rows,
    rank_label,
    short,
)
from orchestrator.run.events import KILLED, PHASE_FINISHED, PHASE_SKIPPED, PHASE_STARTED, SENTINEL_SEEN
from orchestrator.run.progress import read_progress

STYLES = {OK: "green", MISMATCH: "bold red", NONDETERMINISTIC: "bold magenta", MISSING: "yellow"}
TAIL_LINES = 6
MAX_EVENTS = 12


@dataclass
class _Phase:
    label: str
    started: float
    nproc: int | None = None
    state: str = "running"
    wall_s: float | None = None
    exit_code: int | None = None
    killed: bool = False
    ranks: dict[int, dict[str, Any]] = field(default_factory=dict)


class LiveEvents:
    """The live view; a ``RunEvents`` sink. Call ``start()`` before the run and ``stop()`` after.

    Args:
        out: the terminal to draw on.
        run_dir: the run directory (the workers' progress files are read from it).
        title: what the run is, shown in the header (the spec's name).
        echo_workers: show the last lines of worker output.
    """

    def __init__(self, out: TextIO, run_dir: Path, title: str, echo_workers: bool = True) -> None:
        self.console = Console(file=out)
        self.run_dir = Path(run_dir)
        self.title = title
        self.echo_workers = echo_workers
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._phases: list[_Phase] = []
        self._events: deque[tuple[float, str, str]] = deque(maxlen=MAX_EVENTS)
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._killed_once = False
        self._spinner = Spinner("dots", style="cyan")
        self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4, transient=False)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Starts drawing."""
        self._live.start()

    def stop(self) -> None:
        """Draws the last frame and stops; safe to call twice."""
        if self._live.is_started:
            with self._lock:
                self._tail.clear()  # the last frame stays on screen: without worker noise
            self._live.stop()

    # -- RunEvents ------------------------------------------------------------------

    def event(self, kind: str, phase: str | None, message: str, **data: Any) -> None:
        now = time.monotonic()
        with self._lock:
            style = "white"
            current = self._find(phase)
            if kind == PHASE_STARTED and phase is not None:
                self._phases.append(_Phase(phase, now, nproc=data.get("nproc")))
                if data.get("prewarmed"):  # a fresh torchrun that waits for the kill before it trains
                    message = f"{phase}: fresh workers pre-warming (torchrun pid {data.get('agent_pid')})"
                    style = "bold cyan"
                elif self._killed_once:
                    message = f"{phase}: relaunched fresh workers (torchrun pid {data.get('agent_pid')})"
                    style = "bold cyan"
            elif kind == SENTINEL_SEEN:
                style = "yellow"
            elif kind == KILLED:
                style = "bold red"
                self._killed_once = True
                if current is not None:
                    current.killed = True
                message = "✕ " + message
            elif kind == PHASE_SKIPPED:  # its pre-warmed workers are gone: no row for it
                self._phases = [p for p in self._phases if p.label != phase]
            elif kind == PHASE_FINISHED and current is not None:
                current.wall_s = data.get("wall_s")
                current.exit_code = data.get("exit_code")
                current.state = str(data.get("outcome", "finished"))
                current.ranks = self._ranks(current.label)
                style = "green" if current.exit_code == 0 or current.killed or "sentinel" in current.state else "red"
            self._events.append((now - self.started, style, message))

    def worker_line(self, phase: str, rank: int | None, line: str) -> None:
        if not self.echo_workers:
            return
        with self._lock:
            self._tail.append(f"[{phase} r{rank}] {line}" if rank is not None else f"[{phase}] {line}")

    # -- drawing --------------------------------------------------------------------

    def _find(self, label: str | None) -> _Phase | None:
        return next((p for p in reversed(self._phases) if p.label == label), None)

    def _ranks(self, label: str) -> dict[int, dict[str, Any]]:
        try:
            return read_progress(self.run_dir, label)
        except OSError:
            return {}

    def _render(self) -> RenderableType:
        with self._lock:
            phases = list(self._phases)
            events = list(self._events)
            tail = list(self._tail)
        now = time.monotonic()
        header = Table.grid(expand=True)
        header.add_column()
        header.add_column(justify="right")
        header.add_row(
            Text.assemble(("stop-and-go ", "bold"), (self.title, "cyan")),
            Text(f"elapsed {_clock(now - self.started)}", style="bold"),
        )
        table = Table(expand=True, box=None, pad_edge=False, show_edge=False)
        table.add_column("phase", style="bold", no_wrap=True)
        table.add_column("state", no_wrap=True)
        table.add_column("step per rank", ratio=1)
        table.add_column("elapsed", justify="right", no_wrap=True)
        for phase in phases:
            running = phase.wall_s is None
            if running:
                phase.ranks = self._ranks(phase.label) or phase.ranks
            state: RenderableType
            if running:
                spinning = Table.grid(padding=(0, 1))
                spinning.add_row(self._spinner, Text("running", style="cyan"))
                state = spinning
            else:
                word = "killed" if phase.killed else phase.state
                state = Text(("✕ " if phase.killed else "✓ ") + word, style=_phase_style(phase))
            elapsed = phase.wall_s if phase.wall_s is not None else now - phase.started
            table.add_row(phase.label, state, _rank_steps(phase), f"{elapsed:5.1f}s")
        log = Text()
        for at, style, message in events:
            log.append(f"{_clock(at)}  ", style="dim")
            log.append(message + "\n", style=style)
        parts: list[RenderableType] = [
            header,
            table,
            Panel(log or Text("starting…"), title="events", title_align="left"),
        ]
        if tail:
            parts.append(Text("\n".join(tail), style="dim", no_wrap=True, overflow="ellipsis"))
        return Group(*parts)

    # -- summary --------------------------------------------------------------------

    def print_summary(self, report: dict[str, Any]) -> None:
        """The coloured summary of a finished run (``report`` as ``report_dict`` builds it)."""
        print_summary(self.console, report)


def print_summary(console: Console, report: dict[str, Any]) -> None:
    """Prints the phases, the metric table coloured by verdict, and the verdict line."""
    phases = Table(title="phases", title_justify="left", title_style="bold", box=None, pad_edge=False)
    for name in ("phase", "wall", "exit", "outcome"):
        phases.add_column(name)
    for p in report.get("phases", []):
        note = str(p.get("outcome"))
        if p.get("kill"):
            note += f"; {p['kill'].get('signal')} to {len(p['kill'].get('pids', []))} processes"
        phases.add_row(p["name"], f"{p.get('wall_s', 0):.1f}s", str(p.get("exit_code")), note)
    console.print(phases)
    for line in legend([p["name"] for p in report.get("phases", [])], report.get("phase_meanings") or {}):
        console.print(Text(line, style="dim"))
    latency = report.get("sentinel_to_all_dead_s")
    if latency is not None:
        console.print(f"all stop processes dead [bold]{latency:.3f}s[/] after the sentinel")
    rows = metric_rows(report)
    if rows:
        table = Table(title="metrics", title_justify="left", title_style="bold", pad_edge=False)
        table.add_column("metric", no_wrap=True)
        table.add_column("rank", no_wrap=True)
        for name in ("saved", "resumed", "reference"):
            table.add_column(name, overflow="fold")
        table.add_column("verdict", no_wrap=True)
        for r in collapse_ranks(rows):
            style = STYLES.get(r.status, "dim")
            table.add_row(
                r.metric,
                rank_label(r.rank),
                short(r.saved),
                short(r.resumed),
                short(r.reference),
                Text(r.verdict_text, style=style),
            )
        console.print(table)
        for r in first_divergences(rows):
            console.print(Text("  " + divergence_sentence(r), style="red"))
    verdict = report.get("verdict") or {}
    comparisons = verdict.get("trajectories") or {
        label: verdict.get(key) for label, key in (("stop", "stop_vs_reference"), ("go", "go_vs_reference"))
    }
    for label, comparison in comparisons.items():
        if not comparison:
            continue
        steps = comparison.get("steps") or []
        span = f"steps {steps[0]}-{steps[-1]}" if steps else "no steps"
        state = "identical" if comparison.get("ok") else f"{len(comparison.get('divergences', []))} divergent metric(s)"
        console.print(
            f"{label} vs continuous reference: {span}, {comparison.get('compared_values')} values compared: "
            f"[{'green' if comparison.get('ok') else 'bold red'}]{state}[/]"
        )
    failures = verdict.get("failures") or []
    if failures:
        console.print(Text(f"{len(failures)} difference(s); all in {report.get('run_dir')}/report.json", style="dim"))
    code = report.get("exit_code")
    mark, style = ("✔", "bold green") if code == 0 else ("✘", "bold red")
    message = cut_long_values(str(report.get("message")))
    console.print(Text(f"{mark} verdict: {message} (exit {code}: {report.get('exit_meaning')})", style))


def _phase_style(phase: _Phase) -> str:
    if phase.killed:
        return "yellow"
    return "green" if phase.exit_code == 0 else "red"


def _rank_steps(phase: _Phase) -> RenderableType:
    if not phase.ranks:
        return Text("waiting for the first step…" if phase.wall_s is None else "-", style="dim")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(width=20)
    grid.add_column(no_wrap=True)
    for rank in sorted(phase.ranks):
        data = phase.ranks[rank]
        step, total = int(data.get("step") or 0), data.get("max_steps")
        bar = ProgressBar(total=float(total), completed=float(step), width=20) if total else Text("")
        grid.add_row(f"r{rank}", bar, f"{step}/{total}" if total else f"step {step}")
    return grid


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"
