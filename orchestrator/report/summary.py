"""The run report: a human summary for the terminal and the same facts as JSON."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from orchestrator.exit_codes import DESCRIPTIONS
from orchestrator.judge.compare import EVIDENCE_METRICS, MetricCheck
from orchestrator.judge.coverage import coverage, coverage_lines
from orchestrator.judge.diagnosis import diagnose
from orchestrator.report.phase_names import legend, phase_meanings
from orchestrator.report.readable import cut_long_values
from orchestrator.report.schema import SCHEMA_VERSION
from orchestrator.run.options import RunOptions
from orchestrator.run.runner import RunOutcome
from orchestrator.run.timings import timings_line

_MAX_VALUE_WIDTH = 24
MAX_DIFFERENCES = 12


def report_dict(outcome: RunOutcome, options: RunOptions, peak_rss_mb: float | None = None) -> dict[str, Any]:
    """Everything the report says, as JSON-ready data."""
    return {
        "schema_version": SCHEMA_VERSION,  # orchestrator/report/report.schema.json
        "exit_code": int(outcome.code),
        "exit_meaning": DESCRIPTIONS[outcome.code],
        "message": outcome.message,
        "spec": str(options.spec),
        "harness": _harness_name(outcome) or options.harness,
        "run_dir": str(outcome.run_dir),
        "nproc_per_node": options.nproc_per_node,
        "go_nproc_per_node": options.go_nproc_per_node,
        "kill_signal": outcome.phases[0].kill["signal"] if outcome.phases and outcome.phases[0].kill else None,
        "reference": options.reference,
        "sentinel": outcome.sentinel.to_dict() if outcome.sentinel else None,
        "sentinel_to_detect_s": outcome.detect_latency_s,
        "sentinel_to_all_dead_s": outcome.kill_latency_s,
        "stops": outcome.stops,
        "stack_dumps": outcome.stack_dumps,
        "phases": [asdict(p) for p in outcome.phases],
        "verdict": outcome.verdict.to_dict() if outcome.verdict else None,
        "diagnosis": run_diagnosis(outcome),
        "leftover_pids": outcome.leftover_pids,
        "timings": outcome.timings,
        "coverage": coverage(outcome.stops),
        "orchestrator_peak_rss_mb": peak_rss_mb,
        # What go1, go2 ... are (the summary's legend), for the phases that ran.
        "phase_meanings": {
            label: meaning
            for label, meaning in phase_meanings(options.plans()).items()
            if any(p.name == label for p in outcome.phases)
        },
    }


def _harness_name(outcome: RunOutcome) -> str | None:
    for phase in outcome.phases:
        for result in phase.results:
            if result.get("harness"):
                return result["harness"]
    return None


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= _MAX_VALUE_WIDTH else text[: _MAX_VALUE_WIDTH - 1] + "…"


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return out


def _check_rows(checks: list[MetricCheck]) -> list[list[str]]:
    # Ranks with identical values share one row ("0-2", "0,2").
    rows: dict[tuple[str, str, str, str], list[int]] = {}
    for c in sorted(checks, key=lambda c: (c.metric, c.rank)):
        state = "evidence" if c.metric in EVIDENCE_METRICS else "ok" if c.ok else "MISMATCH"  # never judged
        key = (c.metric, _short(c.expected), _short(c.actual), state)
        rows.setdefault(key, []).append(c.rank)
    return [
        [metric, rank_span(ranks), saved, resumed, state] for (metric, saved, resumed, state), ranks in rows.items()
    ]


def _resume_points(verdict: Any) -> str:
    steps = [str(r["resumed_step"]) for r in verdict.resumes]
    if len(steps) > 1:
        return f"resume points (steps {', '.join(steps)})"
    return f"resume point (step {verdict.resume_step})"


def rank_span(ranks: list[int]) -> str:
    """``[0, 1, 2]`` as ``0-2``, ``[0, 2]`` as ``0,2``."""
    ranks = sorted(set(ranks))
    if len(ranks) > 2 and ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"{ranks[0]}-{ranks[-1]}"
    return ",".join(str(r) for r in ranks)


def run_diagnosis(outcome: RunOutcome) -> list[dict[str, Any]]:
    """The verdict's diagnosis, root cause first, knowing which checkpoint each stop completed."""
    if outcome.verdict is None:
        return []
    triggers = [stop.get("trigger") or {} for stop in outcome.stops]
    completed = [trigger.get("checkpoint_path") for trigger in triggers]
    kinds = {trigger.get("instrumentation") for trigger in triggers}
    plain = bool(kinds & {"plain", "transformers"})  # a HF Trainer is recorded by the plain hooks
    instrumentation = next((k for k in kinds if k), None)
    return diagnose(
        outcome.verdict, {"completed_checkpoints": completed, "plain": plain, "instrumentation": instrumentation}
    )


def diagnosis_lines(diagnosis: list[dict[str, Any]]) -> list[str]:
    """The headline of a failed verdict: the root cause, its cause and its fix."""
    if not diagnosis:
        return []
    root = diagnosis[0]
    detail = cut_long_values(root["detail"])
    lines = ["", f"root cause: {detail}", f"  cause: {root['cause']}"]
    if root.get("because"):  # the evidence the cause rests on
        lines.append(f"  because: {cut_long_values(root['because'])}")
    lines.append(f"  fix:   {root['fix']}")
    if root.get("downstream"):
        lines.append(f'  and {root["downstream"]} downstream differences (report.json "diagnosis", "verdict")')
    return lines


def note_lines(verdict: Any) -> list[str]:
    """One line for the state that differs bitwise but within tolerance, all ranks together."""
    within = [d for d in verdict.state_differences if d["within"]]
    if not within:
        return []
    worst = max(within, key=lambda d: d["max_rel"])
    metrics = ", ".join(sorted({d["metric"] for d in within}))
    return [
        f"note: {metrics} differ bitwise from the reference on ranks {rank_span([d['rank'] for d in within])}, "
        f"within tolerance (largest: {worst['max_rel']:.2g} of {worst['tensor']}'s scale at step {worst['step']}, "
        "e.g. a reduction summed in another order); --bitwise makes this a failure"
    ]


def human_summary(outcome: RunOutcome, options: RunOptions) -> str:
    """The summary printed at the end of a run."""
    lines = ["", f"stop-and-go report: {options.spec} ({_harness_name(outcome) or options.harness or '?'})"]
    lines.append(f"run dir: {outcome.run_dir}")
    phase_rows = []
    for phase in outcome.phases:
        note = phase.outcome
        if phase.kill:
            note += f"; {phase.kill['signal']} to {len(phase.kill['pids'])} processes"
        phase_rows.append([phase.name, f"{phase.wall_s:.1f}s", str(phase.exit_code), note])
    if phase_rows:
        lines += ["", *_table(phase_rows, ["phase", "wall", "exit", "outcome"])]
        lines += legend([p.name for p in outcome.phases], phase_meanings(options.plans()))
    if outcome.kill_latency_s is not None and outcome.detect_latency_s is not None:
        lines.append(
            f"sentinel seen after {outcome.detect_latency_s:.3f}s; "
            f"all stop processes dead {outcome.kill_latency_s:.3f}s after the sentinel"
        )
    if timings := timings_line(outcome.timings):
        lines.append(timings)
    verdict = outcome.verdict
    if verdict is not None:
        if verdict.resume_checks and all(c.ok for c in verdict.resume_checks):
            judged = [c for c in verdict.resume_checks if c.metric not in EVIDENCE_METRICS]
            lines += ["", f"{_resume_points(verdict)}: {len(judged)} values saved vs resumed: identical"]
            moved = [c for c in verdict.resume_checks if c.metric == "module_attributes" and c.expected != c.actual]
            if moved:  # evidence for a diagnosis, not a failure: say it all the same
                lines[-1] += f" (module_attributes differ on rank(s) {rank_span([c.rank for c in moved])}, not judged)"
        else:
            lines += ["", f"{_resume_points(verdict)}: saved vs resumed"]
            steps = sorted({c.step for c in verdict.resume_checks if c.step is not None})
            for step in steps if len(steps) > 1 else [None]:  # one table per resume point
                checks = [c for c in verdict.resume_checks if step is None or c.step == step]
                lines += [f"  at step {step}:"] if step is not None else []
                lines += _table(_check_rows(checks), ["metric", "rank", "saved", "resumed", "verdict"])
        if len(verdict.resumes) > 1:  # go1, --cycles: every resume point, each against what it saved
            for r in verdict.resumes:
                state = "identical" if not r.get("mismatched") else f"{r['mismatched']} mismatched"
                lines.append(f"  {r['label']} resumed at step {r['resumed_step']}: {r.get('values', 0)} values {state}")
        for name, comparison in verdict.trajectories.items():
            span = f"steps {comparison.steps[0]}-{comparison.steps[-1]}" if comparison.steps else "no steps"
            state = "identical" if comparison.ok else f"{len(comparison.divergences)} divergent metric(s)"
            lines.append(
                f"{name} vs continuous reference: {span}, {comparison.compared_values} values compared: {state}"
            )
        if not options.reference and options.reference_from is None:  # say what "verified" does not cover
            lines.append(
                "no continuous reference (--no-reference): the resume point was checked; "
                "the steps after it and the data ledger (exactly once) were not"
            )
        lines += coverage_lines(coverage(outcome.stops))
        if verdict.world_size_change:
            lines += world_size_change_lines(verdict.world_size_change)
        lines += note_lines(verdict)
        if verdict.failures:
            shown = verdict.failures[:MAX_DIFFERENCES]
            # Cut to a readable width (a batch's sample ids); report.json keeps them whole.
            lines += ["", "differences:"] + [f"  - {cut_long_values(f)}" for f in shown]
            if len(verdict.failures) > len(shown):
                lines.append(f"  ... and {len(verdict.failures) - len(shown)} more (report.json)")
            lines += diagnosis_lines(run_diagnosis(outcome))
    if outcome.leftover_pids:
        lines.append(f"WARNING: processes of the run still alive: {outcome.leftover_pids}")
    message = cut_long_values(outcome.message)
    lines += ["", f"verdict: {message} (exit {int(outcome.code)}: {DESCRIPTIONS[outcome.code]})"]
    return "\n".join(lines) + "\n"


def _ranks(n: int) -> str:
    return f"{n} rank" if n == 1 else f"{n} ranks"


def world_size_change_lines(change: dict[str, Any]) -> list[str]:
    """What a resume with another world size changed, and what the verdict left out."""
    sizes = change["resumed"]
    resumed = sorted({size for label, size in sizes.items() if size != change["stop"]})
    lines = [
        "",
        f"world size changed: stop and reference on {_ranks(change['stop'])}, resumed on "
        + ", ".join(_ranks(s) for s in resumed)
        + " (compared on world-size-independent values; the sample ledger over all ranks together)",
    ]
    per_rank = change.get("samples_per_rank_step") or {}
    if per_rank.get("reference") is not None:
        lines.append(
            f"  samples per rank and step: {per_rank['reference']} on {_ranks(change['stop'])} (reference), "
            + ", ".join(f"{n} on {label}" for label, n in per_rank.items() if label != "reference")
        )
    tolerances = change.get("tolerances") or {}
    if tolerances:
        lines.append(
            "  within tolerance: "
            + ", ".join(f"{m} (rtol {t[0]:g}, atol {t[1]:g})" for m, t in sorted(tolerances.items()))
        )
    if change["not_compared"]:
        lines.append("  not compared after the resume: " + ", ".join(sorted(change["not_compared"])))
    differing = sorted({(c["metric"], c["rank"]) for c in change["resume_changed"] if c["saved"] != c["resumed"]})
    same = sorted({c["metric"] for c in change["resume_changed"]} - {m for m, _ in differing})
    if differing:
        lines.append(
            "  changed at the resume point (per rank, not compared): "
            + ", ".join(f"{m} (rank {r})" for m, r in differing)
        )
    if same:
        lines.append("  per-rank values carried over unchanged at the resume point: " + ", ".join(same))
    return lines
