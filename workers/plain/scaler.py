"""A plain loop's AMP ``GradScaler``: skipped steps, the unscaled loss and the scaler's state.

``GradScaler.step(optimizer)`` calls ``optimizer.step()`` only when the unscaled gradients
are finite; on inf/NaN it calls nothing, so the global optimizer-step hooks never see that
step. The script's loop went round all the same (its batches trained, its step counter and
its scheduler moved on): the wrapper reports it to the run as a *skipped* step, so the
record stays aligned with the script's own steps and a resume that skips other steps than
the reference is a finding (``optimizer_step_skipped``), not a shift of every later step.

``GradScaler.scale(loss)`` returns ``loss * scale``; ``backward()`` is called on that. The
wrapper remembers which tensor scaled which, so the recorded loss is the script's own, not
one that moves with the scale. The scaler itself is known from its construction, so the
resume check (before the first step) reads its scale, as for Lightning's precision plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from workers.record.steps import StepRecorder


class ScalerWatch:
    """Wraps ``torch.amp.GradScaler`` (``torch.cuda.amp.GradScaler`` is a subclass) for one run."""

    def __init__(
        self,
        recorder: StepRecorder,
        optimizer_steps: Callable[[], int],
        skipped_step: Callable[[torch.optim.Optimizer], None],
    ) -> None:
        """``optimizer_steps``: how many steps every optimizer took so far; ``skipped_step``: report one."""
        self.recorder = recorder
        self.optimizer_steps = optimizer_steps
        self.skipped_step = skipped_step
        # id(scaled loss) -> (scaled loss, the loss it scaled); kept until the step, so ids stay unique.
        self._scaled: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def unscaled(self, tensor: torch.Tensor) -> torch.Tensor:
        """The loss ``tensor`` is a scaled copy of, or ``tensor`` itself."""
        hit = self._scaled.get(id(tensor))
        return hit[1] if hit is not None and hit[0] is tensor else tensor

    def install(self, patch: Callable[[Any, str, Callable[[Any], Any]], None]) -> None:
        """Puts the wrappers in place with the run's ``patch`` (so that ``remove`` undoes them)."""
        scaler_class = getattr(getattr(torch, "amp", None), "GradScaler", None)
        if scaler_class is None:  # an old torch: torch.cuda.amp only
            scaler_class = torch.cuda.amp.GradScaler
        patch(scaler_class, "__init__", self._wrap_init)
        patch(scaler_class, "scale", self._wrap_scale)
        patch(scaler_class, "step", self._wrap_step)

    def _wrap_init(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def __init__(scaler: Any, *args: Any, **kwargs: Any) -> None:
            original(scaler, *args, **kwargs)
            self.recorder.on_scaler(scaler)

        return __init__

    def _wrap_scale(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def scale(scaler: Any, outputs: Any) -> Any:
            out = original(scaler, outputs)
            if isinstance(outputs, torch.Tensor) and isinstance(out, torch.Tensor) and out is not outputs:
                self._scaled[id(out)] = (out, outputs)
            return out

        return scale

    def _wrap_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def step(scaler: Any, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
            before = self.optimizer_steps()
            out = original(scaler, optimizer, *args, **kwargs)
            if scaler.is_enabled() and self.optimizer_steps() == before:
                self.skipped_step(optimizer)
            self._scaled.clear()
            return out

        return step
