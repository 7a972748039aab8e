"""Which metrics survive a change of world size, and how to compare them across one.

``--go-nproc-per-node M`` resumes a checkpoint written by N ranks with M ranks. Some
recorded values mean the same thing on every rank of any world size; others belong to
one rank, whose share of the data and random stream changes with the world size:

- ``global``: identical on every rank and independent of the world size (step, learning
  rates, scheduler state, hyperparameters, consumed samples). Compared exactly.
- ``state``: bit digests of replicated state (weights, buffers, optimizer moments). Equal
  at the resume point (the checkpoint is loaded bit for bit); after it, a different
  world size reduces gradients in a different order, so the bits differ by rounding.
  Compared at the resume point only.
- ``norm``: norms of that state. Compared at every step within the world-size tolerance.
- ``rank_mean``: per-rank values whose mean over ranks is a global value when every
  rank holds an equal share of the global batch (the loss). The means are compared
  within the world-size tolerance.
- ``per_rank``: a rank's own random streams, batch ids, sampler state and anything a
  spec records without declaring a scope. Not compared across world sizes; reported
  as what changed.

The ledger is compared per step over all ranks together (``global_ledger``).
Torch-free: the orchestrator and the workers both use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

GLOBAL = "global"
STATE = "state"
NORM = "norm"
RANK_MEAN = "rank_mean"
PER_RANK = "per_rank"
SCOPES = (GLOBAL, STATE, NORM, RANK_MEAN, PER_RANK)

BUILTIN_SCOPES: dict[str, str] = {
    "global_step": GLOBAL,
    "learning_rate": GLOBAL,
    "learning_rates": GLOBAL,
    "optimizer_hparams": GLOBAL,
    "lr_scheduler_state": GLOBAL,
    "grad_scaler_scale": GLOBAL,
    "optimizer_step_skipped": GLOBAL,  # the scaler's inf check is on all-reduced gradients
    "weights_digest": STATE,
    "buffers_digest": STATE,
    "optimizer_state_digest": STATE,
    "weights_norm": NORM,
    "buffers_norm": NORM,
    "optimizer_state_norm": NORM,
    "train_loss": RANK_MEAN,
    "val_loss": GLOBAL,  # logged with sync_dist: already the mean over ranks
}
"""The scopes of the built-in metrics and the trajectory's own values; the rest are per rank."""

# Rounding from a different reduction order: loose enough for a few steps of Adam on
# float32, tight enough that a wrong learning rate or a lost moment still shows.
WORLD_SIZE_CHANGE_RTOL = 1e-4
WORLD_SIZE_CHANGE_ATOL = 1e-6


def scope_of(metric: str, declared: Mapping[str, str] | None = None) -> str:
    """The scope of ``metric``: the spec's declaration, else the built-in one, else per rank."""
    if declared and metric in declared:
        return declared[metric]
    return BUILTIN_SCOPES.get(metric, PER_RANK)


def validate_scopes(declared: Mapping[str, str]) -> None:
    """Raises ``ValueError`` naming the first metric declared with an unknown scope."""
    for metric, scope in declared.items():
        if scope not in SCOPES:
            raise ValueError(f"metric {metric!r} has scope {scope!r}; expected one of {', '.join(SCOPES)}")


def global_view(per_rank: Mapping[int, Mapping[str, Any]], declared: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The world-size-independent values of one step, from every rank's metrics.

    ``global`` and ``norm`` values come from the lowest rank;
    ``rank_mean`` values are averaged over the ranks that recorded them; ``per_rank``
    values are left out.
    """
    if not per_rank:
        return {}
    first = per_rank[min(per_rank)]
    view: dict[str, Any] = {}
    for metric, value in first.items():
        scope = scope_of(metric, declared)
        if scope in (GLOBAL, NORM):
            view[metric] = value
        elif scope == RANK_MEAN:
            values = [m[metric] for m in per_rank.values() if isinstance(m.get(metric), (int, float))]
            if values:
                view[metric] = sum(values) / len(values)
    return view


def world_size_tolerances(
    metrics: Sequence[str], declared: Mapping[str, str] | None, overrides: Mapping[str, Sequence[float]] | None
) -> dict[str, list[float]]:
    """Per-metric (rtol, atol) for comparisons across world sizes: ``--tolerances`` first,
    then the world-size tolerance for ``norm`` and ``rank_mean`` metrics."""
    table: dict[str, list[float]] = {}
    for metric in metrics:
        if overrides and metric in overrides:
            table[metric] = [float(v) for v in overrides[metric]]
        elif scope_of(metric, declared) in (NORM, RANK_MEAN):
            table[metric] = [WORLD_SIZE_CHANGE_RTOL, WORLD_SIZE_CHANGE_ATOL]
    return table


def not_compared(metrics: Sequence[str], declared: Mapping[str, str] | None, at_resume: bool) -> dict[str, str]:
    """The metrics a comparison across world sizes leaves out, each with the reason."""
    reasons = {}
    for metric in metrics:
        scope = scope_of(metric, declared)
        if scope == PER_RANK:
            reasons[metric] = "per rank: each rank's share changes with the world size"
        elif scope == STATE and not at_resume:
            reasons[metric] = "bit digest: a different world size rounds gradient reductions differently"
    return reasons


def global_trajectory(
    per_rank: Mapping[int, Sequence[Mapping[str, Any]]], declared: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One trajectory of world-size-independent values, step by step, from every rank's.

    A step enters only with the ranks that recorded it (a killed phase's ranks may have
    flushed different amounts).
    """
    by_step: dict[int, dict[int, Mapping[str, Any]]] = {}
    for rank, entries in per_rank.items():
        for entry in entries:
            by_step.setdefault(int(entry["step"]), {})[rank] = entry.get("metrics", {})
    return [{"step": step, "metrics": global_view(by_step[step], declared)} for step in sorted(by_step)]
