"""The catalog of known resume bugs: finding patterns -> a cause id, a cause and a fix.

Data, not code: each entry names the metrics it matches, optionally where they were found
(``resume``, a phase label as ``trajectory``, ``ledger``), the finding kinds (ledger:
``duplicated``, ``skipped`` ...; cadence: ``shift``, ``extra`` ...) and one named test
(``TESTS`` in ``orchestrator.judge.diagnosis``) on the values. ``orchestrator.judge.diagnosis``
tries the entries in this order on the earliest findings; the first that matches names the
root cause. The ``id`` is what a mutant declares as ``EXPECTED_CAUSE``. ``fix_plain``, where
given, replaces ``fix`` for a plain PyTorch loop (no Lightning hooks to point at).
"""

from __future__ import annotations

from typing import Any

DATA = ("sample_ledger", "batch_hash", "batch_sample_ids", "consumed_samples", "sampler_state")
RNG = ("rng_python", "rng_numpy", "rng_torch", "rng_cuda", "megatron_rng_tracker")
OPTIMIZER = (
    "optimizer_state_digest",
    "optimizer_state_norm",
    "full_optimizer_state_digest",
    "full_optimizer_state_norm",
)

CATALOG: list[dict[str, Any]] = [
    {
        "id": "incomplete_checkpoint",
        "where": ["resume"],
        "test": "resumed_other_checkpoint",
        "cause": "go resumed from another checkpoint than the complete one stop saved last: an incomplete "
        "(half-written) checkpoint was picked up as the latest",
        "fix": "write checkpoints to a temporary name and rename when complete, and pick the latest checkpoint "
        "by a completion marker, not by its modification time",
    },
    {
        "id": "global_step_off",
        "metrics": ["global_step"],
        "cause": "the step counter was restored off (doubled or off by one): the resumed loop counts steps "
        "the reference does not",
        "fix": "restore global_step from the checkpoint's loop state only once; do not increment it in "
        "on_load_checkpoint or count the resumed batch again",
    },
    {
        "id": "grad_accumulation",
        "metrics": ["grad_accum_micro_batches"],
        "cause": "the gradient-accumulation window was reset on resume: the resumed run accumulates a "
        "different number of micro-batches in its first step",
        "fix": "checkpoint at accumulation boundaries only, or save and restore the accumulation position "
        "(the batch index within the window) with the loop state",
    },
    {
        "id": "epoch_replay",
        "metrics": list(DATA),
        "test": "duplicated_after_epoch_boundary",
        "cause": "a sample was trained twice after an epoch boundary: with num_workers>0 Lightning creates the "
        "resumed epoch's iterator before it calls set_epoch, so the epoch replays an earlier permutation",
        "fix": "call sampler.set_epoch(epoch) before the iterator is created (e.g. in the data module's "
        "train_dataloader from trainer.current_epoch), or use a stateful loader that restores its own epoch",
    },
    {
        "id": "sampler_restart",
        "metrics": list(DATA),
        "test": "restarted",
        "cause": "the sampler restarted its epoch at batch 0 on resume: samples already trained before the "
        "stop were trained again",
        "fix": "Lightning restarts a non-stateful loader's epoch on resume; use a stateful loader (torchdata "
        "StatefulDataLoader) or the kit's resumable loader from `workers`",
        "fix_plain": "a DataLoader has no position to save: use torchdata's StatefulDataLoader (with a "
        "StatefulDistributedSampler under DDP), save each rank's loader.state_dict() with the checkpoint and "
        "load it before iterating",
    },
    {
        "id": "sampler_epoch_ahead",
        "metrics": list(DATA),
        "test": "sampler_epoch_ahead",
        "cause": "the resumed sampler shuffles the next epoch's permutation: its epoch is one ahead of the "
        "reference's. After a resume from a checkpoint saved at an epoch's end, Lightning (2.6) counts the "
        "finished epoch again in its loop state and passes that count to set_epoch",
        "fix": "checkpoint on steps or validations (every_n_train_steps, or save_on_train_epoch_end=False) "
        "instead of in on_train_epoch_end, or seed the sampler from trainer.current_epoch",
    },
    {
        "id": "sampler_offset",
        "metrics": list(DATA),
        "cause": "the data stream after the resume is not the reference's: the sampler's resume offset was "
        "lost or applied again (samples skipped or shifted)",
        "fix": "save the number of consumed samples with the checkpoint and apply it once, to the resumed "
        "epoch only; reset it at the next epoch's set_epoch",
    },
    {
        "id": "rng_replicated",
        "metrics": list(RNG),
        "test": "equal_across_ranks",
        "cause": "RNG saved from rank 0 only: every rank resumed with rank 0's random state",
        "fix": "save each rank's RNG state (per-rank files, or gather all ranks' states into the checkpoint) "
        "and restore rank r's state on rank r; the kit's workers.RngStateCallback does both",
        "fix_plain": "save each rank's torch.get_rng_state() (and numpy's, python's, CUDA's where used) in a "
        "per-rank file of the checkpoint, and restore rank r's state on rank r",
    },
    {
        "id": "rng_not_restored",
        "metrics": list(RNG),
        "cause": "the random number generators were not restored from the checkpoint (dropout, augmentation "
        "and sampling draw other numbers after the resume)",
        "fix": "add the kit's workers.RngStateCallback to the Trainer (every rank's torch/numpy/python/CUDA "
        "state, weights_only-safe), or save and restore them yourself in on_save/on_load_checkpoint",
        "fix_plain": "save every rank's generator states with the checkpoint (torch.get_rng_state(), "
        "torch.cuda.get_rng_state_all(), numpy's and python's where used) and restore them after loading, "
        "after anything else that draws (building the model, creating the loader's iterator)",
    },
    {
        "id": "scheduler_off_by_one",
        "metrics": ["lr_scheduler_state", "learning_rate", "learning_rates"],
        "test": "off_by_one",
        "cause": "the LR scheduler was restored one step off: it was restored before/after its step of the "
        "checkpointed iteration",
        "fix": "restore the scheduler's state_dict after the optimizer's and do not step it again on resume; "
        "save it after its step of the checkpointed iteration",
    },
    {
        "id": "scheduler_not_restored",
        "metrics": ["lr_scheduler_state", "learning_rate", "learning_rates"],
        "cause": "the LR scheduler was not restored: the resumed run starts the schedule over",
        "fix": "return the scheduler from configure_optimizers (so Lightning checkpoints it), or save and "
        "load its state_dict yourself",
        "fix_plain": "save scheduler.state_dict() with the checkpoint and load it after the optimizer's",
    },
    {
        "id": "optimizer_state_dropped",
        "metrics": list(OPTIMIZER),
        "test": "zero_after",
        "cause": "the optimizer's moments were dropped: the resumed optimizer state is empty (zero)",
        "fix": "save optimizer.state_dict() in the checkpoint and load it into the optimizer after it is "
        "created (check that loading does not silently skip unmatched params)",
    },
    {
        "id": "optimizer_state_misassigned",
        "metrics": list(OPTIMIZER),
        "cause": "the optimizer state was restored but not as saved (moments loaded for the wrong parameters "
        "or param groups in another order)",
        "fix": "build the optimizer's param groups in the same order as when saving, and map state by "
        "parameter name, not by position",
    },
    {
        "id": "grad_scaler",
        "metrics": ["grad_scaler_scale"],
        "cause": "the AMP grad scaler's scale was not restored (it starts over and skips steps again)",
        "fix": "checkpoint the GradScaler's state_dict (Lightning does for its own precision plugin) and load "
        "it before the first resumed step",
    },
    {
        "id": "buffer_not_saved",
        "metrics": ["buffers_digest", "buffers_norm"],
        "where": ["resume"],
        "cause": "a buffer (EMA weights, BatchNorm statistics) is not in the state_dict: it was not restored",
        "fix": "register it with register_buffer(..., persistent=True) or save it in on_save_checkpoint",
        "fix_plain": "register it with register_buffer(..., persistent=True) so model.state_dict() carries "
        "it, or save and load it with the checkpoint yourself",
    },
    {
        "id": "weights_not_restored",
        "metrics": ["weights_digest", "weights_norm", "full_weights_digest", "full_weights_norm"],
        "where": ["resume"],
        "cause": "the weights resumed are not the weights saved",
        "fix": "check that the checkpoint's state_dict is loaded (strict=True) into the module go trains",
    },
    {
        "id": "val_cadence_shift",
        "metrics": ["val_loss"],
        "kinds": ["shift", "extra", "missing"],
        "cause": "the validation cadence moved after the resume: validations run at other steps than in the "
        "uninterrupted run",
        "fix": "derive when to validate from global_step (val_check_interval in steps) and restore the loop's "
        "batch counters; do not count from the resumed batch",
    },
    {
        "id": "val_data_not_resumed",
        "metrics": ["val_loss"],
        "cause": "validation results differ while training matches: the validation data or its state (sampler, "
        "metric accumulators) was not resumed",
        "fix": "reset validation metrics every validation, and make the validation loader independent of the "
        "process history (seeded per epoch, not per process)",
    },
]

GENERIC_FIX = (
    "look at what saves and restores {metric} ({where}); the report lists both values; "
    "the findings after it are most likely its consequences"
)


def cause_ids() -> list[str]:
    """Every cause id of the catalog, in matching order."""
    return [entry["id"] for entry in CATALOG]
