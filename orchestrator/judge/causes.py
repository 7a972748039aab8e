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
        # Hugging Face Trainer entries (workers.hf): matched only for its runs, before the generic ones.
        "id": "hf_grad_accumulation_window",
        "instrumentation": ["transformers"],
        "metrics": ["grad_accum_micro_batches"],
        "cause": "the Trainer's first resumed step accumulated another number of micro-batches than the "
        "uninterrupted run's: it re-derives the window from global_step, gradient_accumulation_steps and the "
        "epoch's length, so a resume with another window, batch size or number of processes, or an epoch whose "
        "length is not a multiple of the window, cuts it (transformers #17157, #22098)",
        "fix": "resume with the gradient_accumulation_steps, per_device_train_batch_size and number of processes "
        "the checkpoint was saved with, and make the epoch's number of batches a multiple of "
        "gradient_accumulation_steps (dataloader_drop_last=True, or a dataset size that divides)",
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
        "id": "data_pipeline_rng",
        "metrics": list(DATA),
        "test": "same_ids_other_tensors",
        "cause": "per-sample randomness in the data pipeline (augmentation, noise) did not resume: the batches "
        "hold the continuous run's samples with other tensors. Drawn in loader workers (num_workers>0), it comes "
        "from the workers' global RNG, which each worker seeds when it starts and no checkpoint saves, so after "
        "a mid-epoch resume the workers draw the epoch's first numbers again",
        "fix": "wrap the dataset in the kit's workers.kit.WorkerRngState (each worker's RNG saved with a "
        "StatefulDataLoader's state, e.g. ResumableLoader), or draw each sample's augmentation from its own "
        "torch.Generator seeded from (seed, epoch, index); with num_workers=0 the draws are the main process's: "
        "save its RNG (workers.RngStateCallback)",
        "fix_plain": "wrap the dataset in workers.kit.WorkerRngState and use torchdata's StatefulDataLoader, "
        "saving each rank's loader.state_dict() with the checkpoint, or draw each sample's augmentation from "
        "its own torch.Generator seeded from (seed, epoch, index)",
    },
    {
        "id": "hf_epoch_shuffle_not_replayed",
        "instrumentation": ["transformers"],
        "metrics": list(DATA),
        "test": ["epoch_behind", "duplicated_after_epoch_boundary"],
        "cause": "the Trainer resumed in a later epoch with the first epoch's shuffle: the train sampler's order "
        "depends on how many epochs it was iterated (a generator seeded once and advanced by each epoch), not on "
        "the epoch, and a resume does not replay the epochs before it (transformers #8874)",
        "fix": "make the sampler's order a function of the epoch: give it set_epoch(epoch) and seed its "
        "generator with seed + epoch in __iter__ (the Trainer calls set_epoch on its train sampler every epoch), "
        "or keep the Trainer's own sampler (seed / data_seed) instead of overriding _get_train_sampler",
    },
    {
        "id": "epoch_replay",
        "metrics": list(DATA),
        "test": ["epoch_behind", "duplicated_after_epoch_boundary"],
        "cause": "the epoch after the resume replays an earlier epoch's order: the resumed sampler did not follow "
        "set_epoch (a restore that skips set_epoch, or, with num_workers>0, Lightning creating the resumed "
        "epoch's iterator before it calls set_epoch)",
        "fix": "make the sampler follow every set_epoch(epoch) after a restore (a flag that skips the call right "
        "after the restore must clear itself), call set_epoch before the iterator is created (e.g. in "
        "train_dataloader from trainer.current_epoch), or use a stateful loader whose state carries the epoch "
        "(the kit's ResumableLoader)",
    },
    {
        "id": "offset_per_rank",
        "metrics": list(DATA),
        "test": "offset_per_rank",
        "cause": "the resume offset was computed over one rank's samples instead of all ranks': the resumed "
        "position is the saved one divided (or multiplied) by the world size, so samples are trained again "
        "(or skipped)",
        "fix": "count the consumed samples over all ranks (global_step x per-rank batch x world size x "
        "accumulation) when saving, and convert it to each rank's share exactly once on resume (the kit's "
        "ResumableSampler.seek takes the global count and does it)",
    },
    {
        "id": "hf_batches_not_skipped",
        "instrumentation": ["transformers"],
        "metrics": list(DATA),
        "test": ["restarted_at_zero", "position_moved"],
        "cause": "the Trainer's resumed epoch did not continue where the checkpoint left it: skip_first_batches "
        "skipped other batches than those trained (ignore_data_skip=True, a custom get_train_dataloader or "
        "sampler whose order differs after the restart, or an Accelerate skip_first_batches that resets the "
        "sampler's epoch: accelerate #4071), so samples were trained twice or skipped",
        "fix": "keep ignore_data_skip=False; a custom sampler or dataloader must give the same batches for the "
        "same epoch (order from seed + epoch via set_epoch) so that the skipped batches are the ones trained; "
        "upgrade Accelerate where its skip_first_batches loses the sampler's epoch",
    },
    {
        "id": "loader_not_restored_on_some_ranks",
        "metrics": list(DATA),
        "test": "some_ranks_only",
        "cause": "the data loader resumed on some ranks only: the others' data is the reference's, so the "
        "loader can resume, but these ranks' state was not saved or not loaded (one file for all ranks, a load "
        "under `if rank == 0`, or rank 0's state loaded everywhere)",
        "fix": "save every rank's own loader state (a per-rank file, or gathered into the checkpoint) and load "
        "rank r's state on rank r, before iterating",
    },
    {
        "id": "sampler_restart",
        "metrics": list(DATA),
        "test": "restarted_at_zero",
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
        "test": "position_moved",
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
        "id": "rng_reseeded",
        "metrics": list(RNG),
        "test": "reseeded_after_restore",
        "cause": "the RNG was restored from the checkpoint and then re-seeded (or drawn from) before training "
        "resumed: user code seeds after the restore",
        "fix": "do not seed after the restore: seed once before building the model (setup_model / before the "
        "Trainer), and seed in on_fit_start/setup or a callback only on a fresh run (trainer.ckpt_path is None), "
        "before RngStateCallback restores",
    },
    {
        "id": "hf_rng_not_restored",
        "instrumentation": ["transformers"],
        "metrics": list(RNG),
        "test": "not_restored",
        "cause": "the Trainer's random states were not the checkpoint's when training resumed: it restores "
        "rng_state[_R].pth only when the first resumed batch is fetched and only if the file is there "
        "(save_only_model=True saves none), and anything that seeds or draws after that (a callback calling "
        "set_seed) moves dropout and sampling to other numbers",
        "fix": "keep save_only_model=False so every process's rng_state_R.pth is saved, resume through "
        "trainer.train(resume_from_checkpoint=...) rather than loading the weights yourself, and call set_seed "
        "only before building the model, never in a callback during training",
    },
    {
        "id": "rng_not_restored",
        "metrics": list(RNG),
        "test": "not_restored",
        "cause": "the random number generators were not restored from the checkpoint (dropout, augmentation "
        "and sampling draw other numbers after the resume)",
        "fix": "add the kit's workers.RngStateCallback to the Trainer (every rank's torch/numpy/python/CUDA "
        "state, weights_only-safe), or save and restore them yourself in on_save/on_load_checkpoint",
        "fix_plain": "save every rank's generator states with the checkpoint (torch.get_rng_state(), "
        "torch.cuda.get_rng_state_all(), numpy's and python's where used) and restore them after loading, "
        "after anything else that draws (building the model, creating the loader's iterator)",
    },
    {
        "id": "attribute_not_saved",
        "test": "attribute_changed",
        "cause": "a plain Python attribute of the module drives training but is in no state dict: the resumed "
        "process starts it over",
        "fix": "keep it in a buffer (self.register_buffer('name', torch.tensor(0))), save and load it in "
        "on_save_checkpoint/on_load_checkpoint, or derive it from the restored trainer (trainer.global_step)",
        "fix_plain": "keep it in a buffer (register_buffer(..., persistent=True)) so model.state_dict() carries "
        "it, or save and load it with the checkpoint yourself",
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
        "id": "optimizer_not_loaded",
        # The param groups' LR came back fresh too: with the LR as saved, the moments' own causes follow.
        "metrics": ["learning_rate", "learning_rates"],
        "where": ["resume"],
        "test": "optimizer_not_loaded",
        "cause": "the optimizer's state was not loaded on resume: its param groups (learning rates) and moments "
        "are a fresh optimizer's, while the LR scheduler was restored",
        "fix": "let Lightning restore the optimizer (return it from configure_optimizers and resume with "
        "ckpt_path); where you restore by hand, call optimizer.load_state_dict() with the saved state",
        "fix_plain": "call optimizer.load_state_dict(checkpoint['optimizer']) on resume, after building the "
        "optimizer and before its first step (and before the scheduler's load_state_dict)",
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
        "id": "optimizer_hparams_changed",
        "metrics": ["optimizer_hparams"],
        "test": "hparams_changed",
        "cause": "the optimizer's hyperparameters were changed on load: the resumed param groups are not the "
        "saved ones (a hyperparameter applied again to the loaded state)",
        "fix": "load the optimizer's state_dict as saved and do not re-apply configured hyperparameters (weight "
        "decay, betas, momentum) to it in on_load_checkpoint or after loading; a deliberate change belongs in a "
        "checkpointed schedule",
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
        "metrics": ["grad_scaler_scale", "optimizer_step_skipped"],
        "cause": "the AMP grad scaler's scale was not restored (it starts over and skips steps again)",
        "fix": "checkpoint the GradScaler's state_dict (Lightning does for its own precision plugin) and load "
        "it before the first resumed step",
        "fix_plain": "save scaler.state_dict() with the checkpoint and call scaler.load_state_dict() on resume, "
        "before the first scaler.step()",
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
