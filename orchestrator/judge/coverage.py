"""Which resume situations a run exercised, and which option would add the others.

Each stopping phase's sentinel carries what its worker knew of the resume point
(``Sentinel.resume_point``: epoch, batch in epoch, batches and steps per epoch,
gradient accumulation, validation interval, checkpoint steps of later epochs). From
these the coverage section lists, per situation, whether some resume of the run was in
it, and for those that were not, the option that would exercise it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MID_EPOCH = "mid-epoch"
AT_EPOCH_BOUNDARY = "at an epoch boundary"
AFTER_EPOCH_BOUNDARY = "after an epoch boundary"
AFTER_VALIDATION = "right after a validation"
BETWEEN_VALIDATIONS = "between validations"
AT_ACCUMULATION_BOUNDARY = "at a gradient-accumulation boundary"


def _situations(point: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    step, epoch, batch = point.get("step"), point.get("epoch"), point.get("batch_in_epoch")
    if batch is not None:
        found.add(MID_EPOCH if batch else AT_EPOCH_BOUNDARY)
    if epoch:
        found.add(AFTER_EPOCH_BOUNDARY)
    val_every = point.get("val_every_steps")
    if val_every and step is not None:
        found.add(AFTER_VALIDATION if step % val_every == 0 else BETWEEN_VALIDATIONS)
    if (point.get("accumulate_grad_batches") or 1) > 1:
        found.add(AT_ACCUMULATION_BOUNDARY)  # checkpoints fall on optimizer steps
    return found


def _options(point: Mapping[str, Any]) -> dict[str, str]:
    """The option that would add each situation, with a concrete step where one is known."""
    # None: not known before training (a train loader without a length and no max_steps).
    per_epoch = point.get("steps_per_epoch")
    last = point.get("last_step")
    val_every = point.get("val_every_steps") or 0
    two_epochs = bool(per_epoch and (last is None or per_epoch < last))
    if two_epochs:
        boundary, after_boundary = f"--kill-at {per_epoch}", "the default scenario (drop --single-stop)"
    elif per_epoch is None:  # a stream: its epochs end where its data does
        boundary, after_boundary = "--kill-at STEP (an epoch's last step)", "the default scenario (drop --single-stop)"
    else:
        boundary = after_boundary = "a run of two epochs"
    options = {
        MID_EPOCH: "--kill-at STEP (a step inside an epoch)",
        AT_EPOCH_BOUNDARY: boundary,
        AFTER_EPOCH_BOUNDARY: after_boundary,
        AFTER_VALIDATION: f"--kill-at {val_every}"
        if val_every and (last is None or val_every < last)
        else f"validations more often than every {val_every} steps (the run ends at step {last})"
        if val_every
        else "validations by steps",
        BETWEEN_VALIDATIONS: f"--kill-at {val_every + 1}"
        if val_every and (last is None or val_every + 1 < last)
        else "--kill-at",
        AT_ACCUMULATION_BOUNDARY: "a spec with accumulate_grad_batches > 1",
    }
    return options


def _plain_options() -> dict[str, str]:
    """A plain loop's: no validations by steps, no go1 (its epochs are not known ahead): --kill-at."""
    return {
        MID_EPOCH: "--kill-at STEP (a step inside an epoch)",
        AT_EPOCH_BOUNDARY: "--kill-at STEP (an epoch's last step)",
        AFTER_EPOCH_BOUNDARY: "--kill-at STEP (a step of a later epoch)",
        AT_ACCUMULATION_BOUNDARY: "gradient accumulation in the script",
    }


def coverage(stops: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The coverage section of the report (JSON-ready) from the run's stop records.

    Returns ``{"resume_points": [...], "exercised": [...], "not_exercised":
    [{"situation", "option"}]}``; ``resume_points`` is empty when no sentinel carried a
    resume point (a torn-save stop, an older worker), and nothing is claimed then.
    """
    stops = list(stops)
    points = []
    for stop in stops:
        point = (stop.get("trigger") or {}).get("resume_point")
        if point:
            points.append({"label": stop.get("label"), **point, "situations": sorted(_situations(point))})
    if not points:
        return {"resume_points": [], "exercised": [], "not_exercised": []}
    exercised = set().union(*(set(p["situations"]) for p in points))
    options = _options(points[0])
    if any((stop.get("trigger") or {}).get("instrumentation") in ("plain", "transformers") for stop in stops):
        options = _plain_options()
    order = list(options)
    missing = [{"situation": s, "option": options[s]} for s in order if s not in exercised]
    if (points[0].get("accumulate_grad_batches") or 1) <= 1:
        missing = [m for m in missing if m["situation"] != AT_ACCUMULATION_BOUNDARY]
    return {
        "resume_points": points,
        "exercised": [s for s in order if s in exercised],
        "not_exercised": missing,
    }


def _place(point: Mapping[str, Any]) -> str:
    """``epoch 1, batch 2/4``; a batch or an epoch length that is not known is left out."""
    batch, per_epoch = point.get("batch_in_epoch"), point.get("batches_per_epoch")
    if batch is None:
        return f"epoch {point['epoch']}"
    return f"epoch {point['epoch']}, batch {batch}" + (f"/{per_epoch}" if per_epoch else "")


def coverage_lines(section: Mapping[str, Any]) -> list[str]:
    """The coverage section for the terminal: at most three lines."""
    points = section.get("resume_points") or []
    if not points:
        return []
    where = ", ".join(f"{p['label']}: step {p['step']} ({_place(p)})" for p in points)
    exercised = ", ".join(section["exercised"])
    lines = [f"coverage: resumed {where}" + (f": {exercised}" if exercised else "")]
    if section["not_exercised"]:
        lines.append(
            "  not covered: " + "; ".join(f"{m['situation']} ({m['option']})" for m in section["not_exercised"])
        )
    return lines
