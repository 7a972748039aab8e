"""A finished run, read back for the reports: per-metric verdict rows and trajectories.

The terminal summary, the HTML and PNG reports, the JUnit XML and the pytest plugin all
show the same facts; they read them here, from ``report.json`` (``report_dict``) and the
trajectory files the workers left, so that every view agrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.judge.verdict import read_trajectories
from orchestrator.protocol import PHASE_CONTINUOUS, PHASE_GO, PHASE_STOP, MetadataLayout, ProtocolError, read_json

# Verdict words of a metric row, also used as CSS classes and colour keys.
OK = "ok"
MISMATCH = "mismatch"  # differs at the resume point or after it
NONDETERMINISTIC = "nondeterministic"  # stop differs from the reference before the kill
MISSING = "missing"  # go never recorded some of the reference's steps
UNCHECKED = "unchecked"  # nothing to compare (no reference, or the run failed first)

_WIDTH = 24


@dataclass
class MetricRow:
    """One metric on one rank (``rank`` None: the same on every rank)."""

    metric: str
    rank: int | None
    saved: Any = None
    resumed: Any = None
    reference: Any = None  # the continuous run's value at the resume step
    resume_ok: bool | None = None
    first_divergent_step: int | None = None
    expected_at_divergence: Any = None
    actual_at_divergence: Any = None
    status: str = UNCHECKED
    phase: str | None = None  # the phase label where it first diverged (``go1``, ``go``...)

    @property
    def verdict_text(self) -> str:
        """A few words: ``ok``, ``MISMATCH at resume (step 2)``, ``diverged at step 3``..."""
        if self.status == OK:
            return "ok"
        if self.status == MISMATCH:
            if self.resume_ok is False:
                return f"MISMATCH at resume (step {self.first_divergent_step})"
            return f"diverged at step {self.first_divergent_step}"
        if self.status == NONDETERMINISTIC:
            return f"stop differs from reference at step {self.first_divergent_step}"
        if self.status == MISSING:
            return "steps missing after resume"
        return "not checked"


def short(value: Any, width: int = _WIDTH) -> str:
    """A value as at most ``width`` characters (``-`` for no value)."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def is_number(value: Any) -> bool:
    """True for a finite or non-finite int/float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def reference_metadata_dir(report: dict[str, Any]) -> str | None:
    """The continuous reference run's metadata dir, from its phase results."""
    return _phase_metadata_dir(report, PHASE_CONTINUOUS)


def stop_go_metadata_dir(report: dict[str, Any]) -> str | None:
    """The metadata dir shared by stop and go: the sentinel's, else the phase results'."""
    sentinel = report.get("sentinel") or {}
    return (
        sentinel.get("metadata_dir") or _phase_metadata_dir(report, PHASE_GO) or _phase_metadata_dir(report, PHASE_STOP)
    )


def _phase_metadata_dir(report: dict[str, Any], phase: str) -> str | None:
    for record in report.get("phases", []):
        if record["name"] == phase:
            for result in sorted(record.get("results", []), key=lambda r: r.get("rank", 0)):
                if result.get("metadata_dir"):
                    return result["metadata_dir"]
    return None


def world_size(report: dict[str, Any]) -> int:
    """The number of ranks of the run."""
    sentinel = report.get("sentinel") or {}
    if sentinel.get("world_size"):
        return int(sentinel["world_size"])
    ranks = [r.get("world_size") or 0 for p in report.get("phases", []) for r in p.get("results", [])]
    return max([int(report.get("nproc_per_node") or 1), *ranks])


def resume_step(report: dict[str, Any]) -> int | None:
    """The step the stop run checkpointed and go resumed from (None without a sentinel)."""
    sentinel = report.get("sentinel") or {}
    return sentinel.get("step")


Steps = dict[int, dict[str, Any]]  # step -> metrics


@dataclass
class Segment:
    """One stopping or resumed phase of the stop+go story (``stop``, ``go1`` ... ``go``)."""

    label: str
    steps: dict[int, Steps] = field(default_factory=dict)  # rank -> step -> metrics
    killed: bool = False
    resumed_step: int | None = None  # the checkpoint step it resumed from (None: the first stop)
    saved: dict[int, dict[str, Any]] = field(default_factory=dict)  # rank -> metrics of that checkpoint
    resumed: dict[int, dict[str, Any]] = field(default_factory=dict)  # rank -> metrics right after the restore
    checks: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # rank -> the resume check's checks

    def last_step(self) -> int | None:
        """The last step any rank recorded (where a killed phase stopped)."""
        found = [s for steps in self.steps.values() for s in steps]
        return max(found) if found else None


@dataclass
class RunTrajectories:
    """Per-rank metric trajectories of a run: the reference and the stop+go segments."""

    world_size: int
    reference: dict[int, Steps] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)

    @property
    def resume_step(self) -> int | None:
        """The checkpoint step of the first resume."""
        return next((s.resumed_step for s in self.segments if s.resumed_step is not None), None)

    @property
    def kill_step(self) -> int | None:
        """The last step the first stop run recorded before it was killed."""
        return next((s.last_step() for s in self.segments if s.killed), None)

    def metrics(self) -> list[str]:
        """Every metric recorded by any phase on any rank, sorted."""
        names: set[str] = set()
        for phase in [self.reference, *(s.steps for s in self.segments)]:
            for steps in phase.values():
                for metrics in steps.values():
                    names.update(metrics)
        for segment in self.segments:
            for values in (*segment.saved.values(), *segment.resumed.values()):
                names.update(values)
        return sorted(names)

    def ranks(self) -> list[int]:
        """Every rank that recorded anything."""
        found = set(self.reference)
        for segment in self.segments:
            found |= set(segment.steps) | set(segment.resumed)
        return sorted(found)

    @staticmethod
    def series(phase: dict[int, Steps], rank: int, metric: str) -> list[tuple[int, Any]]:
        """``(step, value)`` pairs of one metric on one rank, in step order."""
        steps = phase.get(rank, {})
        return [(s, steps[s][metric]) for s in sorted(steps) if metric in steps[s]]


def _by_step(entries: list[dict[str, Any]]) -> Steps:
    return {int(e["step"]): dict(e.get("metrics", {})) for e in entries}


def _read(metadata_dir: str | None, phase: str, ranks: int) -> dict[int, Steps]:
    if not metadata_dir or not Path(metadata_dir).is_dir():
        return {}
    try:
        return {rank: _by_step(entries) for rank, entries in read_trajectories(metadata_dir, phase, ranks).items()}
    except ProtocolError:
        return {}  # a torn or foreign file: the report shows what it can


def _read_resume_checks(segment: Segment, metadata_dir: str, ranks: int) -> None:
    layout = MetadataLayout(metadata_dir)
    for rank in range(ranks):
        try:
            data = read_json(layout.resume_check(segment.label, rank))
        except ProtocolError:
            data = None
        if not data:
            continue
        segment.resumed_step = data.get("resumed_step", segment.resumed_step)
        segment.checks[rank] = list(data.get("checks", []))
        for check in data.get("checks", []):
            segment.saved.setdefault(rank, {})[check["metric"]] = check["expected"]
            segment.resumed.setdefault(rank, {})[check["metric"]] = check["actual"]


def load_trajectories(report: dict[str, Any]) -> RunTrajectories:
    """Reads the trajectories of a finished run from the files its report points to."""
    ranks = world_size(report)
    data = RunTrajectories(ranks)
    data.reference = _read(reference_metadata_dir(report), PHASE_CONTINUOUS, ranks)
    metadata_dir = stop_go_metadata_dir(report)
    killed = {stop.get("label") for stop in report.get("stops") or []}
    for record in report.get("phases", []):
        label = record["name"]
        if label == PHASE_CONTINUOUS or any(s.label == label for s in data.segments):
            continue
        segment = Segment(label, killed=label in killed or (bool(record.get("kill")) and label == PHASE_STOP))
        if metadata_dir:
            segment.steps = _read(metadata_dir, label, ranks)
            if label != PHASE_STOP:
                _read_resume_checks(segment, metadata_dir, ranks)
        data.segments.append(segment)
    _fill_from_verdict(data, report.get("verdict") or {})
    return data


def _fill_from_verdict(data: RunTrajectories, verdict: dict[str, Any]) -> None:
    """Resume points the check files did not give (moved or older layout), from the verdict."""
    resumed = [seg for seg in data.segments if seg.label != PHASE_STOP]
    by_label = {r.get("label"): r.get("resumed_step") for r in verdict.get("resumes") or []}
    for seg in resumed:
        if seg.resumed_step is None:
            seg.resumed_step = by_label.get(seg.label, verdict.get("resume_step") if seg.label == PHASE_GO else None)
    if len(resumed) == 1 and not resumed[0].checks and verdict.get("resume_checks"):
        seg = resumed[0]
        for check in verdict["resume_checks"]:
            seg.checks.setdefault(check["rank"], []).append(check)
            seg.saved.setdefault(check["rank"], {})[check["metric"]] = check["expected"]
            seg.resumed.setdefault(check["rank"], {})[check["metric"]] = check["actual"]


def metric_rows(report: dict[str, Any], trajectories: RunTrajectories | None = None) -> list[MetricRow]:
    """One row per (metric, rank): saved, resumed, reference value and verdict.

    Metrics only in the trajectories (``train_loss``, ``val_loss``) get rows too, with
    their trajectory verdict.
    """
    verdict = report.get("verdict")
    if not verdict:
        return []
    data = trajectories if trajectories is not None else load_trajectories(report)
    step = verdict.get("resume_step")
    rows: dict[tuple[str, int], MetricRow] = {}

    def row(metric: str, rank: int) -> MetricRow:
        if (metric, rank) not in rows:
            reference = data.reference.get(rank, {}).get(step, {}).get(metric) if step is not None else None
            rows[(metric, rank)] = MetricRow(metric, rank, reference=reference)
        return rows[(metric, rank)]

    # Resume checks: per resumed phase when the files are there (several with --cycles),
    # else the verdict's flat list. A failing check wins over a passing one.
    resumes = [(seg.resumed_step, seg.checks) for seg in data.segments if seg.checks]
    if not resumes:
        resumes = [(step, {0: verdict.get("resume_checks", [])})]
    for resumed_step, by_rank in resumes:
        for checks in by_rank.values():
            for check in checks:
                r = row(check["metric"], check["rank"])
                if r.resume_ok is False or (r.resume_ok is True and check["ok"]):
                    continue
                r.saved, r.resumed, r.resume_ok = check["expected"], check["actual"], bool(check["ok"])
                r.status = OK if r.resume_ok else MISMATCH
                if not r.resume_ok:
                    r.first_divergent_step = resumed_step
                    r.expected_at_divergence, r.actual_at_divergence = check["expected"], check["actual"]
    comparisons = verdict.get("trajectories") or {
        label: verdict.get(key)
        for label, key in ((PHASE_STOP, "stop_vs_reference"), (PHASE_GO, "go_vs_reference"))
        if verdict.get(key) is not None
    }
    if comparisons:
        for rank, steps in data.reference.items():
            for metrics in steps.values():
                for metric in metrics:
                    r = row(metric, rank)
                    if r.status == UNCHECKED:
                        r.status = OK
    for label, comparison in comparisons.items():
        status = NONDETERMINISTIC if label == PHASE_STOP else MISMATCH
        for missing_rank, missing in (comparison.get("missing_steps") or {}).items():
            for (_, rank), r in rows.items():
                if missing and rank == int(missing_rank) and r.status == OK:
                    r.status = MISSING
        for check in comparison.get("divergences", []):
            _mark(row(check["metric"], check["rank"]), check, status, label)
    return sorted(rows.values(), key=lambda r: (r.metric, r.rank if r.rank is not None else -1))


def _mark(r: MetricRow, check: dict[str, Any], status: str, label: str) -> None:
    step = check.get("step")
    if r.status == NONDETERMINISTIC and status == MISMATCH:
        return  # the spec itself is not deterministic: that is the finding
    already = r.first_divergent_step
    if status == MISMATCH and r.status == MISMATCH and already is not None and (step is None or already <= step):
        return  # an earlier divergence (the resume point) already names this metric
    r.status = status
    r.phase = label
    r.first_divergent_step = step
    r.expected_at_divergence, r.actual_at_divergence = check["expected"], check["actual"]


def collapse_ranks(rows: list[MetricRow]) -> list[MetricRow]:
    """Merges a metric's rows into one (rank None) when every rank shows the same thing."""
    by_metric: dict[str, list[MetricRow]] = {}
    for r in rows:
        by_metric.setdefault(r.metric, []).append(r)
    out: list[MetricRow] = []
    for group in by_metric.values():
        if len(group) > 1 and all(_same_view(group[0], other) for other in group[1:]):
            out.append(replace(group[0], rank=None))
        else:
            out.extend(group)
    return out


def _same_view(a: MetricRow, b: MetricRow) -> bool:
    keys = ("saved", "resumed", "reference", "resume_ok", "first_divergent_step", "status", "phase")
    return all(_equal(getattr(a, k), getattr(b, k)) for k in keys)


def _equal(a: Any, b: Any) -> bool:
    if is_number(a) and is_number(b) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def first_divergences(rows: list[MetricRow]) -> list[MetricRow]:
    """The failing rows, earliest first divergent step first (one per metric)."""
    seen: dict[str, MetricRow] = {}
    failing = [r for r in rows if r.status in (MISMATCH, NONDETERMINISTIC)]
    for r in sorted(failing, key=lambda r: (r.first_divergent_step or 0, r.rank or 0, r.metric)):
        seen.setdefault(r.metric, r)
    return list(seen.values())


def rank_label(rank: int | None) -> str:
    """``all`` for a merged row, else the rank number."""
    return "all" if rank is None else str(rank)


def plain_table(rows: list[MetricRow]) -> str:
    """The metric table as aligned plain text (pytest messages, JUnit failure text)."""
    header = ["metric", "rank", "saved", "resumed", "reference", "verdict"]
    body = [
        [r.metric, rank_label(r.rank), short(r.saved), short(r.resumed), short(r.reference), r.verdict_text]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def divergence_sentence(r: MetricRow) -> str:
    """``learning_rate: first divergent step 2 (resume point, rank 0): saved 0.0375, resumed 0.025``."""
    at_resume = r.status == MISMATCH and r.resume_ok is False
    where = "resume point, " if at_resume else ""
    ranks = f"rank {r.rank}" if r.rank is not None else "every rank"
    names = ("saved", "resumed") if at_resume else ("reference", r.phase or "go")
    return (
        f"{r.metric}: first divergent step {r.first_divergent_step} ({where}{ranks}): "
        f"{names[0]} {short(r.expected_at_divergence, 40)}, {names[1]} {short(r.actual_at_divergence, 40)}"
    )
