"""Zero-code instrumentation of plain PyTorch training loops (``stop-and-go run -- SCRIPT``).

``workers.wrap.run`` installs it in every rank before the user's script runs
(``workers.plain.hooks.install``); it stands down as soon as the script builds a Lightning
``Trainer``, whose callbacks are then in charge, and does nothing outside a phase run by
the tool. What it sees, and from where:

- **a step**: one ``step()`` of the script's first optimizer to step (torch.optim's global
  step hooks); a step that a ``GradScaler`` skips on inf/NaN calls no ``step()``: the
  wrapped ``GradScaler.step`` reports it, a step with ``optimizer_step_skipped`` true, so
  the count stays the loop's (``workers.plain.scaler``);
- **the batch**: the inputs of the outermost module called with gradients on in training
  mode (``torch.nn.modules.module``'s global forward hooks); each such call is one
  micro-batch of the next step, for the sample ledger;
- **the loss**: the scalars ``backward()`` was called on during the step, summed (a
  ``GradScaler``'s scaled loss counts as the loss it scaled);
- **the state**: the parameters and buffers of those modules and the state of every
  optimizer that stepped (``workers.record.fingerprint``), the LR schedulers that stepped, the
  grad scaler's scale, the global random generators where the steps draw from them, the epoch a
  ``DistributedSampler`` was set to;
- **checkpoints**: the files the script writes with ``torch.save`` and the directories of
  ``torch.distributed.checkpoint`` ``save``/``async_save``, and what it reads back with
  ``torch.load``/``torch.distributed.checkpoint.load`` (``workers.plain.saves``).

Writes the same files as the Lightning instrumentation (trajectory, ledger, state record,
metadata, resume check, sentinel), so the orchestrator judges both alike.
"""
