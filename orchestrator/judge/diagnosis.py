"""Root cause first: the verdict's findings in causal order, with a known cause and its fix.

Findings are ordered by step (earliest first), then by how far upstream their metric is:
data (ledger, batch hash, consumed samples) before the step counters, before RNG, before
optimizer and scheduler, before weights and buffers, before losses. Among the earliest
findings, the first entry of ``orchestrator.judge.causes.CATALOG`` that matches one of them
names the root cause; everything else is reported as downstream of it.

A catalog entry's named test reads the evidence the run recorded (the ledger's detail,
saved vs resumed positions, RNG digests, optimizer hyperparameters, module attributes:
``orchestrator.judge.evidence``), so a cause is named only when its evidence is there.

``diagnose(verdict)`` returns the JSON report's ``"diagnosis"`` list, root cause first; each
entry has ``metric``, ``rank``, ``step``, ``where``, ``cause_id``, ``cause``, ``fix``, a
one-line ``detail`` of what differed and ``because``: the evidence the cause rests on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.judge.causes import CATALOG, DATA, GENERIC_FIX, OPTIMIZER, RNG
from orchestrator.judge.evidence import EVIDENCE, resume_values, unreproduced_attributes
from orchestrator.judge.trajectory import describe as describe_cadence

PROGRESS = ("global_step", "grad_accum_micro_batches", "current_epoch")
SCHEDULE = (
    "learning_rate",
    "learning_rates",
    "lr_scheduler_state",
    "optimizer_hparams",
    "grad_scaler_scale",
    "optimizer_step_skipped",
)
LAYERS: tuple[tuple[str, ...], ...] = (DATA, PROGRESS, RNG, (*SCHEDULE, *OPTIMIZER))
LOSSES = ("train_loss", "val_loss")
EMPTY_DIGEST = "e3b0c44298fc1c14"  # sha256 of no bytes: a digest of no tensors at all
MAX_ENTRIES = 8

NONDETERMINISTIC_FIX = (
    "make the spec deterministic first: seed the data pipeline's RNG (shuffling, augmentation), keep wall-clock "
    "values out of metrics, seed DataLoader workers (generator / worker_init_fn), and turn on "
    "torch.use_deterministic_algorithms(True) for nondeterministic kernels; --calibrate measures the noise "
    "floor of float metrics to pin as tolerances"
)


def layer(metric: str) -> int:
    """How far upstream a metric is: 0 (data) ... 5 (losses and spec metrics)."""
    for index, names in enumerate(LAYERS):
        if metric in names:
            return index
    if metric.startswith(("weights", "buffers", "full_weights")):
        return 4
    return 5


def causal_key(finding: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sort key: earliest step, then the most upstream metric, then the lowest rank."""
    step = finding.get("step")
    return (step if step is not None else -1, layer(finding["metric"]), finding["metric"], finding.get("rank", 0))


def collect(verdict: Any) -> list[dict[str, Any]]:
    """Every failed check of a ``Verdict`` as a finding with its values and a detail line."""
    found: list[dict[str, Any]] = []
    for check in verdict.resume_checks:
        if not check.ok:
            step = check.step if check.step is not None else verdict.resume_step
            found.append(
                _finding(check.metric, check.rank, step, "resume", None, check.expected, check.actual)
                | {
                    "detail": f"{check.metric} at resume (rank {check.rank}, step {step}): "
                    f"saved {check.expected!r}, resumed {check.actual!r}"
                }
            )
    for label, comparison in verdict.trajectories.items():
        for c in comparison.divergences:
            found.append(
                _finding(c.metric, c.rank, c.step, label, None, c.expected, c.actual)
                | {
                    "detail": f"{c.metric} ({label}, rank {c.rank}, step {c.step}): reference {c.expected!r}, "
                    f"{label} {c.actual!r}"
                }
            )
        for rank, steps in comparison.missing_steps.items():
            if steps:
                found.append(
                    _finding("global_step", rank, min(steps), label, "missing_step", None, None)
                    | {"detail": f"{label} never recorded steps {steps} of the reference (rank {rank})"}
                )
        for d in comparison.cadence:
            found.append(
                _finding(d["metric"], d["rank"], d["step"], label, d["kind"], d["reference_steps"], d["steps"])
                | {"detail": describe_cadence(d, label)}
            )
    if verdict.ledger is not None:
        for p in verdict.ledger.problems:
            found.append(
                _finding("sample_ledger", p.rank, p.step, "ledger", p.kind, None, p.sample) | {"detail": p.detail}
            )
    return sorted(found, key=causal_key)


def _finding(
    metric: str, rank: int, step: int | None, where: str, kind: str | None, expected: Any, actual: Any
) -> dict[str, Any]:
    return {
        "metric": metric,
        "rank": rank,
        "step": step,
        "where": where,
        "kind": kind,
        "expected": expected,
        "actual": actual,
    }


# -- the catalog's named tests ------------------------------------------------------------

Test = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]], Mapping[str, Any]], bool]


def _resumed_other_checkpoint(f: Mapping[str, Any], found: Sequence[Mapping[str, Any]], ctx: Mapping[str, Any]) -> bool:
    completed = ctx.get("completed_checkpoints") or []
    resumed = [r.get("checkpoint") for r in ctx.get("resumes") or []]
    # A resume from the checkpoint stop completed, or from its last(.ckpt) copy, is in order.
    return any(
        want and got and Path(got).stem not in (Path(want).stem, "last")
        for want, got in zip(completed, resumed, strict=False)
    )


def _epoch(detail: str) -> int:
    match = re.search(r"\(epoch (\d+)\)", detail or "")
    return int(match.group(1)) if match else 0


def _duplicated(found: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [g for g in found if g["where"] == "ledger" and g["kind"] == "duplicated"]


def _duplicated_after_epoch_boundary(
    f: Mapping[str, Any], found: Sequence[Mapping[str, Any]], ctx: Mapping[str, Any]
) -> bool:
    return any(_epoch(g.get("detail", "")) >= 1 for g in _duplicated(found))


def _sampler_epoch_ahead(f: Mapping[str, Any], found: Sequence[Mapping[str, Any]], ctx: Mapping[str, Any]) -> bool:
    for g in found:
        if g["metric"] != "sampler_state" or g["where"] != f["where"]:
            continue
        want, got = g.get("expected"), g.get("actual")
        if isinstance(want, dict) and isinstance(got, dict) and isinstance(want.get("epoch"), int):
            return got.get("epoch") == want["epoch"] + 1
    return False


def _equal_across_ranks(f: Mapping[str, Any], found: Sequence[Mapping[str, Any]], ctx: Mapping[str, Any]) -> bool:
    same = [g for g in found if g["metric"] == f["metric"] and g["where"] == f["where"] and g["step"] == f["step"]]
    if len(same) < 1:
        return False
    # Every rank that differs resumed rank 0's value (rank 0 itself is often right).
    saved_rank0 = ctx.get("rank0_saved", {}).get(f["metric"])
    return saved_rank0 is not None and all(g["actual"] == saved_rank0 and g["rank"] != 0 for g in same)


def _off_by_one(f: Mapping[str, Any], found: Sequence[Mapping[str, Any]], ctx: Mapping[str, Any]) -> bool:
    want, got = f.get("expected"), f.get("actual")
    if not (isinstance(want, list) and isinstance(got, list) and want and got):
        return False
    a, b = want[0], got[0]
    return (
        isinstance(a, dict)
        and isinstance(b, dict)
        and abs(int(a.get("last_epoch", 0)) - int(b.get("last_epoch", 0))) == 1
    )


def _zero_after(f: Mapping[str, Any], found: Sequence[Mapping[str, Any]], ctx: Mapping[str, Any]) -> bool:
    mine = [g for g in found if g["rank"] == f["rank"] and g["where"] == f["where"] and g["metric"] in OPTIMIZER]
    return any(g["actual"] == EMPTY_DIGEST or g["actual"] == 0.0 for g in mine)


TESTS: dict[str, Test] = {
    "resumed_other_checkpoint": _resumed_other_checkpoint,
    "duplicated_after_epoch_boundary": _duplicated_after_epoch_boundary,
    "sampler_epoch_ahead": _sampler_epoch_ahead,
    "equal_across_ranks": _equal_across_ranks,
    "off_by_one": _off_by_one,
    "zero_after": _zero_after,
    **EVIDENCE,
}


def _matches(
    entry: Mapping[str, Any], f: Mapping[str, Any], found: Sequence[Mapping[str, Any]], ctx: Mapping[str, Any]
) -> str | None:
    """What the entry's cause rests on for finding ``f`` (None: it does not match)."""
    if "metrics" in entry and f["metric"] not in entry["metrics"]:
        return None
    if "where" in entry and f["where"] not in entry["where"]:
        return None
    if "kinds" in entry and f["kind"] not in entry["kinds"]:
        return None
    if "instrumentation" in entry and ctx.get("instrumentation") not in entry["instrumentation"]:
        return None  # a cause of one framework's resume (e.g. the HF Trainer's)
    tests = entry.get("test", [])
    for name in [tests] if isinstance(tests, str) else tests:  # any one of them
        because = TESTS[name](f, found, ctx)
        if because:
            return because if isinstance(because, str) else f.get("detail") or f["metric"]
    return None if tests else f.get("detail") or f["metric"]


def _entry(
    f: Mapping[str, Any], cause: Mapping[str, Any] | None, plain: bool = False, because: str | None = None
) -> dict[str, Any]:
    out = {k: f[k] for k in ("metric", "rank", "step", "where", "kind", "detail")}
    if cause is None:
        where = "at the resume point" if f["where"] == "resume" else f"in {f['where']}"
        out.update(
            cause_id="unknown",
            cause=f"{f['metric']} differed first ({where}, rank {f['rank']}, step {f['step']}); no known pattern "
            "fits the evidence",
            fix=GENERIC_FIX.format(metric=f["metric"], where=f["where"]),
            because=f.get("detail") or f["metric"],
        )
    else:
        fix = cause.get("fix_plain", cause["fix"]) if plain else cause["fix"]
        out.update(cause_id=cause["id"], cause=cause["cause"], fix=fix, because=because or f.get("detail"))
    return out


def diagnose(verdict: Any, context: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The diagnosis of a verdict, root cause first (empty when it passed).

    ``context`` may hold ``completed_checkpoints``: the checkpoint each stopping phase
    completed last, in order (from its sentinel), to tell an incomplete checkpoint; and
    ``plain``: the run is a plain PyTorch loop's (fixes that name no Lightning hook).
    """
    if verdict.nondeterministic is not None:
        n = verdict.nondeterministic
        return [
            {
                "metric": n["metric"],
                "rank": n["rank"],
                "step": n["step"],
                "where": "stop",
                "kind": None,
                "detail": f"{n['metric']} (rank {n['rank']}, step {n['step']}): reference {n['reference']!r}, "
                f"stop {n['stop']!r}",
                "cause_id": "nondeterministic",
                "cause": f"the spec is not deterministic: stop differed from the reference in {n['metric']} at "
                f"step {n['step']}, before any resume, so no resume can be judged",
                "fix": NONDETERMINISTIC_FIX,
            }
        ]
    found = collect(verdict)
    if not found:
        return []
    ctx = {"resumes": verdict.resumes, **(context or {})}
    ctx["rank0_saved"] = {c.metric: c.expected for c in verdict.resume_checks if c.rank == 0}
    ctx["resume_values"] = resume_values(verdict.resume_checks)
    ctx.setdefault("world_size", len(ctx["resume_values"]) or None)
    stop = verdict.trajectories.get("stop")  # before any resume: what two fresh runs do not agree on
    ctx["unreproduced"] = unreproduced_attributes(getattr(stop, "evidence", []))
    first_step = found[0]["step"]
    earliest = [f for f in found if f["step"] == first_step]
    root, cause, because = earliest[0], None, None
    for entry in CATALOG:
        for f in earliest:
            because = _matches(entry, f, found, ctx)
            if because is not None:
                root, cause = f, entry
                break
        if cause is not None:
            break
    plain = bool(ctx.get("plain"))
    out = [_entry(root, cause, plain, because) | {"downstream": len(found) - 1}]
    seen = {root["metric"]}
    for f in found:
        if f["metric"] in seen or len(out) >= MAX_ENTRIES:
            continue
        seen.add(f["metric"])
        own = next(((e, b) for e in CATALOG if (b := _matches(e, f, found, ctx)) is not None), (None, None))
        out.append(_entry(f, own[0], plain, own[1]))
    return out
