"""One rank's record of a plain training loop: a trajectory entry per optimizer step.

The hooks (``workers.plain.hooks``) feed it the batches, the losses and the steps. A step's
entry is settled (its state read) when its state is final: at the next batch, at a save,
or at the end, so that what the script does after ``optimizer.step()`` (the scheduler's
step, ``zero_grad``) is part of it, as it is of a checkpoint saved there. The files are
those of the Lightning instrumentation: ``trajectory/<phase>/rankR.json``, the sample
ledger and the state record.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from orchestrator.protocol import progress_path, write_json_atomic
from workers.metrics import learning_rates, optimizer_hparams, rng_digests, scheduler_states
from workers.record.attributes import module_attributes
from workers.record.fingerprint import sampled, tensor_digest, tensor_norm
from workers.record.ledger import BatchRecorder
from workers.record.state import Named, StateRecorder, state_groups
from workers.record.trajectory import write_trajectory

PROGRESS_INTERVAL_S = 0.2


class StepRecorder:
    """Counts one rank's optimizer steps and records what the judge needs after each."""

    def __init__(self, metadata_dir: str | os.PathLike[str], phase: str, rank: int, run_dir: str | None) -> None:
        self.metadata_dir = Path(metadata_dir)
        self.phase = phase
        self.rank = rank
        self.run_dir = run_dir
        self.step = 0
        self.epoch: int | None = None  # the last epoch a DistributedSampler was set to
        self.batches_in_epoch = 0  # batches trained since then
        self.modules: list[torch.nn.Module] = []  # outermost modules trained, in first-seen order
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list[Any] = []
        self.scalers: list[Any] = []  # AMP grad scalers (torch.amp.GradScaler)
        self.entries: list[dict[str, Any]] = []
        self.pending: dict[str, Any] | None = None  # the step just taken, its state not yet read
        self.batches = BatchRecorder(metadata_dir, phase)
        self.states = StateRecorder(metadata_dir, phase, rank)
        self._losses: list[torch.Tensor] = []
        self._rng: dict[str, str] | None = None
        self.rng_drawn: set[str] = set()  # generators the steps draw from: only those are judged
        self._progress_at = 0.0
        self._first_step_time: float | None = None

    # -- what the hooks report -------------------------------------------------------------

    def on_batch(self, module: torch.nn.Module, batch: Any) -> None:
        """A micro-batch of the next step went through ``module`` (outermost, training)."""
        if self._rng is None:
            self._rng = rng_digests()  # the phase's start: draws are counted from here
        self.on_module(module)
        self.batches.add(self.step, self.epoch or 0, self._micro_batches(), module, batch)
        self.batches_in_epoch += 1

    def _micro_batches(self) -> int:
        """Batches trained since the last step (the ledger's entries at the current step count)."""
        entries = self.batches.entries
        return self.batches.micro_batches() if entries and entries[-1]["step"] == self.step else 0

    def on_epoch(self, epoch: int) -> None:
        """The script set its sampler's epoch (``DistributedSampler.set_epoch``)."""
        if epoch != self.epoch:
            self.batches_in_epoch = 0
        self.epoch = epoch

    def on_module(self, module: torch.nn.Module) -> None:
        """``module`` is trained (called outermost in training mode): its state is the rank's."""
        if not any(m is module for m in self.modules):
            self.modules.append(module)

    def position(self) -> int | None:
        """Where in its epoch the last step leaves the loader (batches trained), if epochs are known."""
        return self.batches_in_epoch - self._micro_batches() if self.epoch is not None else None

    def on_loss(self, loss: torch.Tensor) -> None:
        """``backward()`` was called on the scalar ``loss``."""
        self._losses.append(loss.detach())

    def on_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """An optimizer steps (any of them): its state is part of the rank's state."""
        if not any(o is optimizer for o in self.optimizers):
            self.optimizers.append(optimizer)

    def on_scheduler(self, scheduler: Any) -> None:
        """An LR scheduler stepped."""
        if not any(s is scheduler for s in self.schedulers):
            self.schedulers.append(scheduler)

    def on_scaler(self, scaler: Any) -> None:
        """An AMP grad scaler was made: its scale is part of the rank's state."""
        if not any(s is scaler for s in self.scalers):
            self.scalers.append(scaler)

    def on_step(self, skipped: bool = False) -> None:
        """The primary optimizer stepped (or a grad scaler ``skipped`` it on inf/NaN): one more step.

        Its entry is pending until its state is final.
        """
        self.settle()
        micro_batches = self._micro_batches()
        last = self.batches.entries[-1] if micro_batches else {}  # the step's last batch, if any
        loss = torch.stack([t.float().reshape(()) for t in self._losses]).sum() if self._losses else None
        self.step += 1
        self.pending = {
            "step": self.step,
            "metrics": {
                "train_loss": loss,
                "batch_sample_ids": last.get("ids"),
                "batch_hash": last.get("hash"),
                "grad_accum_micro_batches": micro_batches,
            },
        }
        if self.scalers:  # with a scaler, which steps it skipped is part of the trajectory
            self.pending["metrics"]["optimizer_step_skipped"] = skipped
        self._losses = []
        if self._first_step_time is None:
            self._first_step_time = time.time()
            self._progress(force=True)

    # -- reading the state -------------------------------------------------------------------

    def groups(self) -> dict[str, Named]:
        """The rank's state tensors: the trained modules' weights and buffers, the optimizers' state."""
        return state_groups(self.modules, self.optimizers)

    def state_metrics(self) -> dict[str, Any]:
        """The state's metrics at the current depth (``workers.record.fingerprint.sampled`` or full)."""
        groups = self.groups()
        rates = learning_rates(self.optimizers)
        metrics: dict[str, Any] = {
            "global_step": self.step,
            "learning_rate": rates[0] if rates else None,
            "learning_rates": rates,
            "optimizer_hparams": optimizer_hparams(self.optimizers),
            "lr_scheduler_state": scheduler_states(self.schedulers),
            "module_attributes": module_attributes(self.modules),  # evidence only, never a failure
        }
        enabled = [s for s in self.scalers if s.is_enabled()]
        if enabled:
            metrics["grad_scaler_scale"] = float(enabled[0].get_scale())
        for group, prefix in (("weights", "weights"), ("buffers", "buffers"), ("optimizer", "optimizer_state")):
            tensors = [t for _, t in groups[group]]
            metrics[f"{prefix}_digest"] = tensor_digest(tensors)
            metrics[f"{prefix}_norm"] = tensor_norm(tensors)
        return metrics

    def rng_metrics(self) -> dict[str, str]:
        """The digests of the generators the steps draw from (a script that never draws has none)."""
        return {k: v for k, v in rng_digests().items() if k in self.rng_drawn}

    def settle(self) -> None:
        """Reads the pending step's state (sampled depth) and records its entry."""
        if self.pending is None:
            return
        entry, self.pending = self.pending, None
        with sampled():
            entry["metrics"].update(self.state_metrics())
            self.states.record(self.step, self.groups())
        rng = rng_digests()
        self.rng_drawn.update(k for k, v in rng.items() if self._rng is not None and self._rng.get(k) != v)
        self._rng = rng
        entry["metrics"].update(rng)
        if self.epoch is not None:  # in the trajectory only: at a resume it is the script's own business
            entry["metrics"]["epoch"] = self.epoch
        loss = entry["metrics"]["train_loss"]
        entry["metrics"]["train_loss"] = float(loss) if loss is not None else None
        self.entries.append(entry)
        self._progress()

    # -- files ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Writes the trajectory (RNG digests only of the generators drawn from) and the ledger."""
        undrawn = {"rng_python", "rng_numpy", "rng_torch", "rng_cuda"} - self.rng_drawn
        entries = [
            {"step": e["step"], "metrics": {k: v for k, v in e["metrics"].items() if k not in undrawn}}
            for e in self.entries
        ]
        write_trajectory(self.metadata_dir, self.phase, self.rank, entries)
        self.batches.flush(self.rank)
        self._progress(force=True)

    def _progress(self, force: bool = False) -> None:
        # The live view's step and the report's kill -> go first-step latency.
        if self.run_dir is None:
            return
        now = time.monotonic()
        if not (force or now - self._progress_at >= PROGRESS_INTERVAL_S):
            return
        self._progress_at = now
        write_json_atomic(
            progress_path(self.run_dir, self.phase, self.rank),
            {
                "rank": self.rank,
                "step": self.step,
                "max_steps": None,
                "time": time.time(),
                "first_step_time": self._first_step_time,
            },
        )
