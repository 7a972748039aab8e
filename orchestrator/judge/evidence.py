"""The evidence a cause rests on: named tests of the catalog that read what the run recorded.

Each test is ``fn(finding, findings, context) -> str | None``: ``None`` when the evidence
does not fit its cause, else one line saying what it rests on (the diagnosis prints it as
``because: ...``). They read the findings (ledger problems, saved vs resumed values,
trajectory divergences) and ``context``: ``resume_values`` (per rank, metric ->
``(saved, resumed)`` of every resume-point value, evidence metrics included),
``world_size`` and ``unreproduced`` (per rank, the module attributes in which the stop run
already differed from the reference before any resume: timers and the like, no evidence).
``orchestrator.judge.diagnosis.TESTS`` holds them with the older tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orchestrator.judge.causes import DATA

Finding = Mapping[str, Any]
Evidence = Callable[[Finding, Sequence[Finding], Mapping[str, Any]], "str | None"]

POSITION_METRICS = ("consumed_samples", "sampler_state")
# Findings a Python attribute may explain: what training computes, not what validation reports.
TRAINING_EFFECTS = (
    "train_loss",
    "learning_rate",
    "learning_rates",
    "lr_scheduler_state",
    "weights_digest",
    "weights_norm",
    "buffers_digest",
    "buffers_norm",
    "optimizer_state_digest",
    "optimizer_state_norm",
    "grad_accum_micro_batches",
    "global_step",
)


def resume_values(checks: Sequence[Any]) -> dict[int, dict[str, tuple[Any, Any]]]:
    """Per rank, metric -> (saved, resumed) at the first resume point (evidence metrics too)."""
    out: dict[int, dict[str, tuple[Any, Any]]] = {}
    for check in checks:
        out.setdefault(check.rank, {}).setdefault(check.metric, (check.expected, check.actual))
    return out


def unreproduced_attributes(checks: Sequence[Any]) -> dict[int, set[str]]:
    """Per rank, the module attributes whose values differed between two uninterrupted runs."""
    out: dict[int, set[str]] = {}
    for check in checks:
        want, got = check.expected, check.actual
        if check.metric == "module_attributes" and isinstance(want, Mapping) and isinstance(got, Mapping):
            # Both runs hold it and disagree (an attribute one lacks: a shared reference's spec).
            out.setdefault(check.rank, set()).update(n for n in want if n in got and want[n] != got[n])
    return out


def _position(value: Any) -> int | None:
    """A loader position in samples: the value itself or a sampler state's ``consumed_samples``."""
    if isinstance(value, Mapping):
        value = value.get("consumed_samples")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _resumed_positions(f: Finding, found: Sequence[Finding]) -> list[tuple[str, int, int]]:
    """(metric, saved, resumed) of the data positions that differed at the resume, on f's rank."""
    out = []
    for g in found:
        if g["where"] == "resume" and g["metric"] in POSITION_METRICS and g["rank"] == f["rank"]:
            saved, resumed = _position(g["expected"]), _position(g["actual"])
            if saved is not None and resumed is not None:
                out.append((g["metric"], saved, resumed))
    return out


def same_ids_other_tensors(f: Finding, found: Sequence[Finding], ctx: Mapping[str, Any]) -> str | None:
    """The ledger's samples are right but their tensors are not: per-sample randomness."""
    for g in found:
        if g["where"] == "ledger" and g["kind"] == "different data" and g["rank"] == f["rank"]:
            return f"the data ledger: {g['detail']}"
    if f["metric"] == "batch_hash":
        # Only the tensors moved: no id, position or sampler finding of the rank at that step.
        positions = ("batch_sample_ids", "sample_ledger", *POSITION_METRICS)
        if not any(g["metric"] in positions and g["rank"] == f["rank"] and g["step"] == f["step"] for g in found):
            return f"{f['detail']}, with the reference's sample ids and loader position"
    return None


def offset_per_rank(f: Finding, found: Sequence[Finding], ctx: Mapping[str, Any]) -> str | None:
    """The resumed position is the saved one divided (or multiplied) by the world size."""
    world = int(ctx.get("world_size") or 1)
    if world < 2:
        return None
    for metric, saved, resumed in _resumed_positions(f, found):
        if saved and resumed and (resumed * world == saved or saved * world == resumed):
            how = "divided" if resumed < saved else "multiplied"
            return (
                f"{metric} at the resume (rank {f['rank']}): saved {saved}, resumed {resumed}, the saved position "
                f"{how} by the {world} ranks: the offset was counted over one rank's samples"
            )
    return None


def restarted_at_zero(f: Finding, found: Sequence[Finding], ctx: Mapping[str, Any]) -> str | None:
    """The resumed loader is at its epoch's first sample, or replays the epoch's first batch."""
    for metric, saved, resumed in _resumed_positions(f, found):
        if resumed == 0 and saved:
            return f"{metric} at the resume (rank {f['rank']}): saved {saved}, resumed 0 (the epoch's start)"
    for g in found:
        twice = re.search(r"trained twice: at step (\d+) of", g.get("detail") or "")
        if g["where"] == "ledger" and g["kind"] == "duplicated" and twice and twice.group(1) == "1":
            return f"the data ledger: {g['detail']} (the epoch's first batch again)"
    return None


def epoch_behind(f: Finding, found: Sequence[Finding], ctx: Mapping[str, Any]) -> str | None:
    """The resumed sampler is in an earlier epoch than the reference's: it replays that order."""
    for g in found:
        if g["metric"] != "sampler_state" or g["where"] == "resume" or g["rank"] != f["rank"]:
            continue
        want, got = g.get("expected"), g.get("actual")
        if isinstance(want, Mapping) and isinstance(got, Mapping):
            a, b = want.get("epoch"), got.get("epoch")
            if isinstance(a, int) and isinstance(b, int) and b < a:
                return (
                    f"sampler_state at step {g['step']} (rank {g['rank']}): {g['where']}'s sampler is in epoch {b} "
                    f"where the reference's is in epoch {a}, so it replays epoch {b}'s order"
                )
    return None


def position_moved(f: Finding, found: Sequence[Finding], ctx: Mapping[str, Any]) -> str | None:
    """The stream is shifted: samples skipped or repeated, or the resumed position is off."""
    for metric, saved, resumed in _resumed_positions(f, found):
        return f"{metric} at the resume (rank {f['rank']}): saved {saved}, resumed {resumed}"
    for g in found:
        if g["where"] == "ledger" and g["kind"] in ("skipped", "duplicated", "unexpected", "reordered", "extra"):
            return f"the data ledger: {g['detail']}"
    return None


def _rank_values(ctx: Mapping[str, Any], rank: int, metric: str) -> tuple[Any, Any] | None:
    return (ctx.get("resume_values") or {}).get(rank, {}).get(metric)


def reseeded_after_restore(f: Finding, found: Sequence[Finding], ctx: Mapping[str, Any]) -> str | None:
    """The kit restored the saved RNG state, yet another state reached train start."""
    if f["where"] != "resume":
        return None
    restored = (_rank_values(ctx, f["rank"], "rng_restored") or (None, None))[1]
    if isinstance(restored, Mapping) and restored.get(f["metric"]) == f["expected"] != f["actual"]:
        return (
            f"RngStateCallback restored {f['metric']} to the saved {f['expected']!r} at fit start (rank {f['rank']}), "
            f"but at train start it was {f['actual']!r}: something re-seeded or drew from it after the restore"
        )
    return None


def not_restored(f: Finding, found: Sequence[Finding], ctx: Mapping[str, Any]) -> str | None:
    """The RNG differs at the resume: say whether anything restored it (where that is recorded)."""
    values = _rank_values(ctx, f["rank"], "rng_restored")  # absent where nothing records restores
    restored = values[1] if values else None
    if isinstance(restored, Mapping) and restored.get(f["metric"]) not in (None, f["expected"]):
        return f"{f['detail']}; the state restored at fit start ({restored.get(f['metric'])!r}) was not the saved one"
    if values is not None and restored is None and f["where"] == "resume":
        return f"{f['detail']}, and no RngStateCallback restore of the saved state was recorded"
    return f["detail"]


def attribute_changed(f: Finding, found: Sequence[Finding], ctx: Mapping[str, Any]) -> str | None:
    """A numeric attribute of the user's modules came back other than saved, and training differs."""
    if f["metric"] not in TRAINING_EFFECTS:
        return None
    values = _rank_values(ctx, f["rank"], "module_attributes")
    if not values or not isinstance(values[0], Mapping):
        return None
    saved, resumed = values[0], values[1] if isinstance(values[1], Mapping) else {}
    noise = (ctx.get("unreproduced") or {}).get(f["rank"], set())  # a timer is no training state
    changed = [name for name in saved if resumed.get(name) != saved[name] and name not in noise]
    if not changed:
        return None
    shown = "; ".join(
        f"`self.{n}` is {resumed.get(n, 'unset')} after the resume, {saved[n]} when saved" for n in changed
    )
    return f"{shown} (rank {f['rank']}), and {f['detail']}"


def hparams_changed(f: Finding, found: Sequence[Finding], ctx: Mapping[str, Any]) -> str | None:
    """Saved vs resumed optimizer hyperparameters: which key of which param group, by what factor."""
    want, got = f.get("expected"), f.get("actual")
    if not (isinstance(want, list) and isinstance(got, list)):
        return None
    for group, (a, b) in enumerate(zip(want, got, strict=False)):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            continue
        for key in a:
            if a[key] != b.get(key):
                ratio = ""
                if isinstance(a[key], (int, float)) and isinstance(b.get(key), (int, float)) and a[key]:
                    ratio = f" (x{b[key] / a[key]:.3g})"
                return f"{key} of param group {group}: saved {a[key]!r}, resumed {b.get(key)!r}{ratio}"
    return None


def some_ranks_only(f: Finding, found: Sequence[Finding], ctx: Mapping[str, Any]) -> str | None:
    """The data differs on some ranks only: the others' loaders resumed, so the loader code does."""
    world = int(ctx.get("world_size") or 1)
    ranks = sorted({g["rank"] for g in found if g["metric"] in DATA and isinstance(g.get("rank"), int)})
    if world < 2 or not ranks or len(ranks) >= world:
        return None
    exact = [r for r in range(world) if r not in ranks]
    how = restarted_at_zero(f, found, ctx) or position_moved(f, found, ctx) or f["detail"]
    return (
        f"only rank {', '.join(map(str, ranks))}'s data differs from the reference (rank "
        f"{', '.join(map(str, exact))} resumed exactly); on rank {ranks[0]}: {how}"
    )


def optimizer_not_loaded(f: Finding, found: Sequence[Finding], ctx: Mapping[str, Any]) -> str | None:
    """The scheduler came back as saved, yet the learning rate and the moments did not: the optimizer's did not."""
    if f["where"] != "resume":
        return None
    scheduler = _rank_values(ctx, f["rank"], "lr_scheduler_state")
    moments = _rank_values(ctx, f["rank"], "optimizer_state_digest")
    if not scheduler or not moments or scheduler[0] != scheduler[1] or moments[0] == moments[1]:
        return None
    return (
        f"at the resume (rank {f['rank']}) lr_scheduler_state is the saved one, but {f['metric']} "
        f"({f['expected']!r} saved, {f['actual']!r} resumed) and optimizer_state_digest are not: the param "
        "groups and moments are a fresh optimizer's"
    )


EVIDENCE: dict[str, Evidence] = {
    "some_ranks_only": some_ranks_only,
    "optimizer_not_loaded": optimizer_not_loaded,
    "same_ids_other_tensors": same_ids_other_tensors,
    "offset_per_rank": offset_per_rank,
    "restarted_at_zero": restarted_at_zero,
    "epoch_behind": epoch_behind,
    "position_moved": position_moved,
    "reseeded_after_restore": reseeded_after_restore,
    "not_restored": not_restored,
    "attribute_changed": attribute_changed,
    "hparams_changed": hparams_changed,
}
