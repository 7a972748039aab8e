"""Checkpoints as a plain script writes them: when one is complete, the stop, and the resume.

A **checkpoint** is what the ranks save between two optimizer steps: the files of
``torch.save`` and the directories of ``torch.distributed.checkpoint``, named by their
common directory (or the one file). A rank's part of it is complete when its save calls
have returned (an async save's future is done) and the files are fsynced, which is true
at its next optimizer step. Every rank then writes its metadata for that step: the full
state fingerprints taken when its first save began, or, on a rank that saved nothing
(DDP scripts often save from rank 0 only), its state after that step as recorded. A rank
that saves announces it at once (``saves/<phase>/step<S>/``); the peers see the
announcement at their next optimizer step, since DDP's gradient all-reduce cannot finish
before the saving rank has finished its save and its next backward.

**Stop**: at the optimizer step after the phase's first checkpoint (or after ``--kill-at``'s
step), every rank flushes what it recorded; rank 0 waits for every rank's metadata,
checks the files, writes the sentinel, and all wait to be killed.

**Resume**: go must load (``torch.load``, DCP ``load``) something of the checkpoint the
last stop's sentinel names before its first training step; its step count then continues
from that checkpoint's. The resumed state is compared with the saved metadata at the same
depth, as ``TestCheckpointIntegrityCallback`` does for Lightning.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.judge.compare import check_metrics, tolerances_from_env
from orchestrator.protocol import (
    MetadataLayout,
    RunLayout,
    Sentinel,
    read_json,
    saving_marker_path_for,
    sentinel_path_for,
    wait_for_kill_s_from_env,
    write_json_atomic,
)
from orchestrator.wrap.command import last_stop, stop_records
from workers.errors import (
    NoCheckpointError,
    NotResumedError,
    ResumeMismatchError,
    StopAndGoException,
    TornCheckpointError,
)
from workers.metrics import rng_digests
from workers.record.fingerprint import sampled
from workers.record.steps import StepRecorder
from workers.torn_marker import announce_torn_save, wait_to_be_killed
from workers.wrap.config import WrapConfig

PEERS_TIMEOUT_S = 120.0
# The entry's metrics that are not the state (the step's batch, loss, epoch): metadata leaves them out.
_BATCH_FACTS = ("train_loss", "batch_sample_ids", "batch_hash", "grad_accum_micro_batches", "epoch")


@dataclass
class SaveGroup:
    """This rank's saves after one step: the paths, pending async saves, the state when it began."""

    step: int
    metrics: dict[str, Any]
    paths: list[str] = field(default_factory=list)
    futures: list[Any] = field(default_factory=list)


def _fsync(path: str) -> None:
    target = Path(path)
    files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
    for file in files:
        with contextlib.suppress(OSError), open(file, "rb") as handle:
            os.fsync(handle.fileno())


def _within(path: str, checkpoint: str) -> bool:
    return path == checkpoint or path.startswith(checkpoint.rstrip(os.sep) + os.sep)


class Checkpoints:
    """One rank's checkpoints: saves and loads seen, metadata, the stop and the resume check."""

    def __init__(self, recorder: StepRecorder, config: WrapConfig, rank: int, world_size: int, run_dir: str) -> None:
        self.recorder = recorder
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.run = RunLayout(run_dir)
        self.layout = MetadataLayout(config.metadata_dir)
        self.stopping = config.mode == "stop" or config.stop_after_resume
        self.kill_at = self._kill_step(config.kill_at)
        self.group: SaveGroup | None = None
        self.checkpoints: list[int] = []  # steps with this rank's metadata, in this phase
        self.loaded: list[str] = []
        self.start_step = 0
        self.start_epoch: int | None = None
        self.resumed = config.mode != "go"  # only go has to resume before its first step
        self.mismatches: list[str] = []
        self.stopped = False
        # What an adapter over this protocol (``workers.hf``) adds: its name in the sentinel, the
        # resume point's facts it knows (the accumulation window), its fix for a torn "latest".
        self.instrumentation = "plain"
        self.resume_facts: dict[str, Any] = {}
        self.torn_fix = (
            "fix its latest-checkpoint logic: trust a directory only once a completion marker written last is in "
            "it, or write under a temporary name and rename when complete"
        )

    def _kill_step(self, kill_at: str | None) -> int | None:
        if not kill_at:
            return None
        if not kill_at.lstrip("-").isdigit():
            raise StopAndGoException(
                f"{self.config.label}: --kill-at {kill_at.split(':')[0]} needs the run's last step, which a plain "
                "script does not tell before training; give --kill-at N"
            )
        return int(kill_at)

    # -- what the script saves and loads ---------------------------------------------------

    def saving(self, path: str) -> None:
        """A save to ``path`` begins: the first of a group takes the state it saves."""
        self.recorder.settle()  # in every phase alike: the step's entry is the state saved
        if not self.stopping:
            return
        if self.group is None or self.group.step != self.recorder.step:
            # Full depth (outside ``sampled()``): every byte of the state being saved.
            metrics = {**self.recorder.state_metrics(), **self.recorder.rng_metrics()}
            self.group = SaveGroup(self.recorder.step, metrics)
            announce = self.layout.root / "saves" / self.config.label / f"step{self.recorder.step}"
            announce.mkdir(parents=True, exist_ok=True)
            (announce / f"rank{self.rank}").touch()
        self.group.paths.append(str(Path(path).resolve()))

    def saved(self, path: str, future: Any = None) -> None:
        """A save to ``path`` returned (``future``: an async save still writing)."""
        if self.group is None:
            return
        if future is not None:
            self.group.futures.append(future)
        else:
            _fsync(path)
        if self.config.kill_during_save and self.checkpoints and self.group.step > max(self.checkpoints):
            self._killed_while_saving(path, future)

    def loading(self, path: str) -> None:
        """The script reads ``path`` (a file or a DCP directory); never from a torn checkpoint."""
        resolved = str(Path(path).resolve())
        self.loaded.append(resolved)
        if self.config.mode != "go":
            return
        for marker in stop_records(self.run):
            if marker.get("torn") and _within(resolved, str(marker["path"])):
                raise TornCheckpointError(
                    f"{self.config.label}: the script loads from {marker['path']}, the checkpoint the stop was "
                    f"killed while writing ({len(marker.get('files_written') or [])} file(s) written), not from the "
                    f"complete {Path(str(marker.get('checkpoint_path'))).name}; {self.torn_fix}"
                )

    # -- step boundaries ---------------------------------------------------------------------

    def before_step(self) -> None:
        """The primary optimizer is about to take step S+1: step S and its saves are complete."""
        if not self.stopping:
            return
        step = self.recorder.step
        self._complete_group()
        if step not in self.checkpoints and self._announced(step):
            self._write_metadata(step, self._entry_metrics(step), [], "sampled")
        if self.config.kill_during_save:
            return  # the stop ends in the second checkpoint's save (``saved``)
        if self.kill_at is not None:
            if step >= self.kill_at:
                self._stop(step)
            return
        if step in self.checkpoints and step > self.start_step and self._epoch_allows(step):
            self._stop(step)

    def checkpoint_complete(self) -> None:
        """A framework says this rank's part of the step's checkpoint is complete (HF ``on_save``).

        What ``before_step`` does at the next step, now; a rank that saved nothing writes its
        state after the step as recorded, announced or not: the framework named it a checkpoint.
        """
        self.recorder.settle()
        step = self.recorder.step
        if self.stopping and self.group is None and step not in self.checkpoints:
            self._write_metadata(step, self._entry_metrics(step), [], "sampled")
        self.before_step()

    def _complete_group(self) -> None:
        group, self.group = self.group, None
        if group is None:
            return
        if group.futures:  # async saves: complete, then on disk
            for future in group.futures:
                future.result()
            for path in group.paths:
                _fsync(path)
        self._write_metadata(group.step, group.metrics, sorted(set(group.paths)), "full")

    def _announced(self, step: int) -> bool:
        announce = self.layout.root / "saves" / self.config.label / f"step{step}"
        return announce.is_dir() and any(announce.iterdir())

    def _entry_metrics(self, step: int) -> dict[str, Any]:
        entry = next((e for e in reversed(self.recorder.entries) if e["step"] == step), None)
        if entry is None:  # no step recorded yet (a save before training): read it now
            with sampled():
                return {**self.recorder.state_metrics(), **self.recorder.rng_metrics()}
        drawn = self.recorder.rng_drawn
        return {
            k: v
            for k, v in entry["metrics"].items()
            if k not in _BATCH_FACTS and (not k.startswith("rng_") or k in drawn)
        }

    def _write_metadata(self, step: int, metrics: dict[str, Any], files: list[str], depth: str) -> None:
        payload = {
            "rank": self.rank,
            "world_size": self.world_size,
            "step": step,
            "pid": os.getpid(),
            "metrics": metrics,
            "depth": depth,
            "files": files,
            "epoch": self.recorder.epoch,
            "batch_in_epoch": self.recorder.position(),
        }
        write_json_atomic(self.layout.metadata(self.rank, step), payload)
        self.checkpoints.append(step)

    def _epoch_allows(self, step: int) -> bool:
        # The default scenario's go1 stops only at a checkpoint of a later epoch than its start's.
        if not self.config.later_epoch:
            return True
        epoch = self.recorder.epoch
        return epoch is not None and self.start_epoch is not None and epoch > self.start_epoch

    # -- the stop ----------------------------------------------------------------------------

    def _killed_while_saving(self, path: str, future: Any) -> None:
        """``--kill-during-save``: the second checkpoint has its first file on disk; be killed now.

        The save marker names that checkpoint (torn: its other files never come) and the
        last complete one, which a resume must start from.
        """
        if future is not None:
            future.result()
            _fsync(path)
        assert self.group is not None
        self.stopped = True
        self.recorder.flush()
        last = max(self.checkpoints)
        complete, _ = self._checkpoint_of(last)
        torn = str(Path(self.group.paths[0]).parent if Path(self.group.paths[0]).is_file() else self.group.paths[0])
        written = sorted(set(self.group.paths))
        announce_torn_save(
            saving_marker_path_for(self.layout.root),
            {
                "path": torn,
                "step": self.group.step,
                "files_written": written,
                "checkpoint_path": complete,
                "resume_step": last,
                "torn": True,
            },
        )
        wait_to_be_killed(wait_for_kill_s_from_env(), f"{torn} was being saved")

    def _stop(self, stopped_at: int) -> None:
        self.stopped = True
        self.recorder.flush()
        earlier = [s for s in self.checkpoints if s <= stopped_at]
        if not earlier:
            raise StopAndGoException(f"{self.config.label}: stopped at step {stopped_at}, before any checkpoint")
        step = max(earlier)
        if self.rank == 0:
            self._write_sentinel(step, stopped_at)
        timeout = wait_for_kill_s_from_env()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.05)
        raise StopAndGoException(f"stopped at step {stopped_at} (not killed within {timeout:g}s)")

    def _checkpoint_of(self, step: int) -> tuple[str, list[dict[str, Any]]]:
        """The checkpoint of ``step`` (every rank's files' common path) and every rank's metadata."""
        deadline = time.monotonic() + PEERS_TIMEOUT_S
        paths = [self.layout.metadata(rank, step) for rank in range(self.world_size)]
        while not all(p.exists() for p in paths):
            if time.monotonic() > deadline:
                missing = [r for r, p in enumerate(paths) if not p.exists()]
                raise StopAndGoException(f"ranks {missing} wrote no metadata for the checkpoint of step {step}")
            time.sleep(0.01)
        saved = [read_json(p) or {} for p in paths]
        files = sorted({f for data in saved for f in data.get("files", [])})
        missing_files = [f for f in files if not Path(f).exists()]
        if not files or missing_files:
            raise StopAndGoException(f"the checkpoint of step {step} is not on disk: {missing_files or 'no files'}")
        return (files[0] if len(files) == 1 else os.path.commonpath(files)), saved

    def _write_sentinel(self, step: int, stopped_at: int) -> None:
        checkpoint, saved = self._checkpoint_of(step)
        resume_point = {
            "step": step,
            "epoch": saved[0].get("epoch"),
            "batch_in_epoch": saved[0].get("batch_in_epoch"),
            "batches_per_epoch": None,
            "steps_per_epoch": None,
            "accumulate_grad_batches": 1,
            "val_every_steps": None,
            "last_step": None,
            "later_epoch_checkpoints": [],  # a plain script's epochs are not known ahead
            "go1_not_run": "not run for a plain PyTorch loop, whose epochs are not known ahead (--kill-at a step "
            "of a later epoch resumes after an epoch boundary)",
            **self.resume_facts,
        }
        sentinel = Sentinel(
            step=step,
            checkpoint_path=checkpoint,
            metadata_dir=str(self.layout.root.resolve()),
            world_size=self.world_size,
            pid=os.getpid(),
            label=self.config.label,
            stopped_at=stopped_at,
            resume_point=resume_point,
            instrumentation=self.instrumentation,
        )
        write_json_atomic(sentinel_path_for(self.layout.root), sentinel.to_dict())

    # -- the resume ----------------------------------------------------------------------------

    def before_first_batch(self) -> None:
        """Go's first training batch: the script must have loaded the stop's checkpoint by now."""
        if self.resumed:
            return
        self.resumed = True
        sentinel = self._last_sentinel()
        checkpoint, step = str(sentinel["checkpoint_path"]), int(sentinel["step"])
        if not any(_within(path, checkpoint) for path in self.loaded):
            what = ", ".join(self.loaded[-3:]) if self.loaded else "nothing"
            raise NotResumedError(
                f"{self.config.label}: the script started training without loading the stop's checkpoint "
                f"{checkpoint} (it loaded {what}); make it resume from it: --go-args '--resume {{checkpoint}}' "
                "with the script's own flag, or load the newest checkpoint of its directory at start"
            )
        self.recorder.step = self.start_step = step
        self.start_epoch = self.recorder.epoch
        saved = read_json(self.layout.metadata(self.rank, step))
        if saved is None:
            raise StopAndGoException(f"rank {self.rank} resumed at step {step}, but no metadata was saved for it")
        if saved.get("batch_in_epoch") is not None and saved.get("epoch") == self.recorder.epoch:
            self.recorder.batches_in_epoch = int(saved["batch_in_epoch"])  # the position continues, for coverage
        # The saved metadata names the generators the stop's steps drew from: those are compared.
        if saved.get("depth") == "full":
            resumed = {**self.recorder.state_metrics(), **rng_digests()}
        else:
            with sampled():
                resumed = {**self.recorder.state_metrics(), **rng_digests()}
        checks = check_metrics(saved["metrics"], resumed, self.rank, tolerances_from_env())
        write_json_atomic(
            self.layout.resume_check(self.config.label, self.rank),
            {
                "rank": self.rank,
                "label": self.config.label,
                "saved_step": step,
                "resumed_step": step,
                "saved_world_size": saved.get("world_size"),
                "world_size": self.world_size,
                "checkpoint": checkpoint,
                "checks": [c.to_dict() for c in checks],
                "changed": [],
            },
        )
        self.mismatches = [
            f"rank {c.rank} {c.metric}: saved {c.expected!r}, resumed {c.actual!r}" for c in checks if not c.ok
        ]

    def _last_sentinel(self) -> dict[str, Any]:
        newest = last_stop(self.run)
        if newest is None:
            raise StopAndGoException(f"{self.config.label}: no stop has left a checkpoint to resume from")
        # A save marker names its torn step; the resume starts from the complete checkpoint before it.
        return {**newest, "step": newest.get("resume_step", newest["step"])}

    # -- the end -------------------------------------------------------------------------------

    def finish(self) -> None:
        """The script returned: record the last step, then say what went wrong, if anything."""
        self.recorder.settle()
        self.recorder.flush()
        if self.stopping and not self.stopped:
            when = (
                f"its only checkpoint came at the end (step {max(self.checkpoints)})"
                if self.checkpoints or self.group is not None
                else "it saved no checkpoint (torch.save or torch.distributed.checkpoint) between two steps"
            )
            raise NoCheckpointError(
                f"{self.config.label}: training ended at step {self.recorder.step} and {when}, so there is no "
                "checkpoint to stop at and resume from; make the script checkpoint during training"
            )
        if not self.resumed:
            raise NotResumedError(f"{self.config.label}: the script trained no step after the stop")
        if self.mismatches:
            raise ResumeMismatchError("resume mismatch: " + "; ".join(self.mismatches))
