"""The hooks that feed a plain loop's record: PyTorch's global hooks, and thin wrappers where none exist.

- ``torch.optim`` global optimizer-step pre/post hooks: the step (of the first optimizer to
  step), and the moment before the next one, when the last step's saves are complete;
- ``torch.nn`` global forward pre/post hooks: the outermost module called in training
  mode with gradients on, its inputs (the batch) and when a step's batches begin;
- wrappers (no hook exists): ``torch.autograd.backward`` (the loss), ``torch.save`` /
  ``torch.load``, ``safetensors.torch``'s ``save_file`` / ``save_model`` / ``load_file`` /
  ``load_model`` and ``torch.distributed.checkpoint``'s ``save`` / ``async_save`` / ``load``
  (checkpoints), ``Optimizer.__init__`` and ``LRScheduler.step`` (the optimizers and
  schedulers, known before they step), ``DistributedSampler.set_epoch`` (the epoch). They
  are put in place before the script runs, so a script that binds ``from
  torch.distributed.checkpoint import save`` at import time gets the wrapper.

``install`` is called by ``workers.wrap.run`` only; ``stand_down`` removes everything (the
script built a Lightning ``Trainer``: its callbacks are in charge).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from workers.plain.saves import Checkpoints
from workers.plain.scaler import ScalerWatch
from workers.record.steps import StepRecorder
from workers.wrap.config import WrapConfig

_active: PlainRun | None = None


def _path(value: Any) -> str | None:
    return os.fspath(value) if isinstance(value, (str, os.PathLike)) else None


class PlainRun:
    """The instrumentation of one rank of one wrapped phase of a plain PyTorch script."""

    def __init__(self, config: WrapConfig, run_dir: str) -> None:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        self.recorder = StepRecorder(config.metadata_dir, config.label, rank, run_dir)
        self.checkpoints = Checkpoints(self.recorder, config, rank, world, run_dir)
        self.primary: torch.optim.Optimizer | None = None
        self.optimizer_steps = 0  # every optimizer's steps: a GradScaler step that adds none skipped
        self.scaler = ScalerWatch(self.recorder, lambda: self.optimizer_steps, self.skipped_step)
        self._depth = 0
        self._outer_training = False
        self._handles: list[RemovableHandle] = []
        self._patched: list[tuple[Any, str, Any]] = []

    # -- hooks -----------------------------------------------------------------------------

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.recorder.on_optimizer(optimizer)
        if self.primary is None:
            self.primary = optimizer
        if optimizer is self.primary:
            self.recorder.settle()
            self.checkpoints.before_step()

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.optimizer_steps += 1
        if optimizer is self.primary:
            self.recorder.on_step()

    def skipped_step(self, optimizer: torch.optim.Optimizer) -> None:
        """A ``GradScaler`` skipped ``optimizer``'s step (inf/NaN): a step of the loop all the same."""
        self._before_step(optimizer, (), {})  # no step() was called: its pre-hook did not run either
        if optimizer is self.primary:
            self.recorder.on_step(skipped=True)

    def _before_forward(self, module: torch.nn.Module, args: Any) -> None:
        self._depth += 1
        if self._depth != 1:
            return
        self._outer_training = module.training and torch.is_grad_enabled()
        if self._outer_training:
            self.recorder.on_module(module)  # before go's resume check, which reads its state
            self.checkpoints.before_first_batch()  # go: the script must have resumed by now
            self.recorder.settle()  # the last step's state is final once the next batch begins

    def _after_forward(self, module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0 and self._outer_training:
            if kwargs:
                batch: Any = {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
            else:
                batch = args[0] if len(args) == 1 else args
            self.recorder.on_batch(module, batch)

    # -- wrappers ----------------------------------------------------------------------------

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        self._patched.append((owner, name, original))
        setattr(owner, name, functools.wraps(original)(make(original)))

    def _wrap_backward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(tensors, torch.Tensor) and tensors.numel() == 1:
                self.recorder.on_loss(self.scaler.unscaled(tensors))
            return original(tensors, *args, **kwargs)

        return backward

    def _wrap_save(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
            path = _path(f)
            if path is not None:
                self.checkpoints.saving(path)
            out = original(obj, f, *args, **kwargs)
            if path is not None:
                self.checkpoints.saved(path)
            return out

        return save

    def _wrap_load(self, original: Callable[..., Any], at: int = 0) -> Callable[..., Any]:
        # ``at``: where the path is (safetensors' load_model(model, filename) has it second).
        def load(*args: Any, **kwargs: Any) -> Any:
            path = _path(args[at] if len(args) > at else kwargs.get("f", kwargs.get("filename")))
            if path is not None:
                self.checkpoints.loading(path)
            return original(*args, **kwargs)

        return load

    def _dcp_path(self, kwargs: dict[str, Any], key: str) -> str | None:
        return _path(kwargs.get("checkpoint_id")) or _path(getattr(kwargs.get(key), "path", None))

    def _wrap_dcp_save(self, original: Callable[..., Any], is_async: bool = False) -> Callable[..., Any]:
        def save(*args: Any, **kwargs: Any) -> Any:
            path = self._dcp_path(kwargs, "storage_writer")
            if path is not None:
                self.checkpoints.saving(path)
            out = original(*args, **kwargs)
            if path is not None:
                self.checkpoints.saved(path, future=out if is_async else None)
            return out

        return save

    def _wrap_dcp_load(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def load(*args: Any, **kwargs: Any) -> Any:
            path = self._dcp_path(kwargs, "storage_reader")
            if path is not None:
                self.checkpoints.loading(path)
            return original(*args, **kwargs)

        return load

    def _wrap_scheduler_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def step(scheduler: Any, *args: Any, **kwargs: Any) -> Any:
            self.recorder.on_scheduler(scheduler)
            return original(scheduler, *args, **kwargs)

        return step

    def _wrap_optimizer_init(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def __init__(optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
            original(optimizer, *args, **kwargs)
            # Known from its construction: go's resume check, before any step, reads its state.
            self.recorder.on_optimizer(optimizer)

        return __init__

    def _wrap_set_epoch(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def set_epoch(sampler: Any, epoch: int) -> Any:
            self.recorder.on_epoch(int(epoch))
            return original(sampler, epoch)

        return set_epoch

    # -- lifecycle -------------------------------------------------------------------------

    def install(self) -> None:
        """Registers the hooks and puts the wrappers in place."""
        from torch.nn.modules import module as nn_module
        from torch.optim import lr_scheduler, optimizer
        from torch.utils.data import distributed

        self._handles = [
            optimizer.register_optimizer_step_pre_hook(self._before_step),
            optimizer.register_optimizer_step_post_hook(self._after_step),
            nn_module.register_module_forward_pre_hook(self._before_forward),
            nn_module.register_module_forward_hook(self._after_forward, with_kwargs=True, always_call=True),
        ]
        self._patch(torch.autograd, "backward", self._wrap_backward)
        self._patch(torch, "save", self._wrap_save)
        self._patch(torch, "load", self._wrap_load)
        self._patch(optimizer.Optimizer, "__init__", self._wrap_optimizer_init)
        self._patch(lr_scheduler.LRScheduler, "step", self._wrap_scheduler_step)
        self._patch(distributed.DistributedSampler, "set_epoch", self._wrap_set_epoch)
        self.scaler.install(self._patch)
        self._patch_safetensors()
        try:
            import torch.distributed.checkpoint as dcp
            from torch.distributed.checkpoint import state_dict_loader, state_dict_saver
        except ImportError:  # a torch built without distributed
            return
        for owner in (dcp, state_dict_saver):
            self._patch(owner, "save", self._wrap_dcp_save)
            self._patch(owner, "async_save", functools.partial(self._wrap_dcp_save, is_async=True))
        for owner in (dcp, state_dict_loader):
            self._patch(owner, "load", self._wrap_dcp_load)

    def _patch_safetensors(self) -> None:
        """safetensors' save/load of a file: checkpoint files as torch.save's (HF and Accelerate save models so)."""
        try:
            import safetensors.torch as st
        except ImportError:  # not installed: nothing can call it
            return
        for name in ("save_file", "save_model"):  # (tensors or model, filename, ...), like torch.save
            self._patch(st, name, self._wrap_save)
        self._patch(st, "load_file", self._wrap_load)
        self._patch(st, "load_model", functools.partial(self._wrap_load, at=1))

    def remove(self) -> None:
        """Removes every hook and wrapper."""
        for handle in self._handles:
            handle.remove()
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._handles, self._patched = [], []


def install(config: WrapConfig, run_dir: str) -> PlainRun:
    """Instruments this process for a plain PyTorch script's phase (before the script runs)."""
    global _active
    _active = PlainRun(config, run_dir)
    _active.install()
    return _active


def active() -> PlainRun | None:
    """The instrumentation in place, if any (None after ``stand_down``)."""
    return _active


def stand_down() -> None:
    """The script built a Lightning ``Trainer``: its callbacks record the phase, these hooks go."""
    global _active
    if _active is not None:
        _active.remove()
        _active = None
