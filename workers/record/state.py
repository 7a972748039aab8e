"""The per-step state record: each state tensor's samples, for the judgement within tolerance.

``orchestrator.judge.state_compare`` re-judges a ``*_digest`` that differs from the
reference per tensor, on the elements the digest covered. After every optimizer step each
rank appends those elements (``workers.record.fingerprint``: the same strided samples the sampled
digests hash, gathered once on the device) to its file (``orchestrator.judge.state_samples``):
a record of at most ``SAMPLE_BUDGET`` values per group, whatever the model's size.

The groups are defined here once, for the metrics and the record alike, from a module
and its optimizers: no framework is assumed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from orchestrator.judge.state_samples import layouts_path, record_header, records_path, samples_dir
from orchestrator.protocol import write_json_atomic
from workers.record.fingerprint import per_tensor_samples, samples

Named = list[tuple[str, torch.Tensor]]


def optimizer_state(
    optimizers: Iterable[torch.optim.Optimizer], module: torch.nn.Module | None = None, weights: Named | None = None
) -> Named:
    """Every optimizer's per-parameter state (moments, step counts), named, in checkpoint order.

    Parameters in their groups' order, each state's keys sorted; a non-tensor value (a
    plain ``step`` number) as a 0-d float64 tensor. Parameters are named after ``module``'s
    (or the named ``weights``), else by their place in their group.
    """
    named = weights if weights is not None else list(module.named_parameters()) if module is not None else []
    names = {id(p): name for name, p in named}
    found: Named = []
    for i, optimizer in enumerate(optimizers):
        for group in optimizer.param_groups:
            for j, param in enumerate(group["params"]):
                state = optimizer.state.get(param, {})
                for key in sorted(state):
                    value = state[key]
                    if not isinstance(value, torch.Tensor):
                        value = torch.tensor(float(value), dtype=torch.float64)
                    found.append((f"{i}.{names.get(id(param), j)}.{key}", value))
    return found


def state_groups(
    module: torch.nn.Module | Sequence[torch.nn.Module], optimizers: Iterable[torch.optim.Optimizer]
) -> dict[str, Named]:
    """The rank's state tensors in the three groups the digests cover: weights, buffers, optimizer.

    With several modules (a plain loop's generator and discriminator, say), each one's
    names get its place as a prefix (``0:net.weight``).
    """
    modules = [module] if isinstance(module, torch.nn.Module) else list(module)

    def prefixed(i: int, name: str) -> str:
        return name if len(modules) == 1 else f"{i}:{name}"

    weights = [(prefixed(i, n), p) for i, m in enumerate(modules) for n, p in m.named_parameters()]
    buffers = [(prefixed(i, n), b) for i, m in enumerate(modules) for n, b in m.named_buffers()]
    return {"weights": weights, "buffers": buffers, "optimizer": optimizer_state(optimizers, weights=weights)}


class StateRecorder:
    """Appends one rank's state samples after each step to its file in the metadata directory."""

    def __init__(self, metadata_dir: str | os.PathLike[str], phase: str, rank: int) -> None:
        self.directory: Path = samples_dir(metadata_dir, phase, rank)
        self.layouts: list[tuple[tuple[str, ...], tuple[int, ...]]] = []
        self._buffer: torch.Tensor | None = None

    def record(self, step: int, groups: dict[str, Named]) -> None:
        """Appends the samples of every group's tensors after ``step``."""
        names: list[str] = []
        parts: list[torch.Tensor] = []
        for group, named in groups.items():
            if not named:
                continue
            tensors: Sequence[torch.Tensor] = [tensor for _, tensor in named]
            names.extend(f"{group}/{name}" for name, _ in named)
            parts.extend(samples(tensors, per_tensor_samples(len(tensors))))
        layout = (tuple(names), tuple(p.numel() for p in parts))
        if layout not in self.layouts:
            self.layouts.append(layout)
            write_json_atomic(
                layouts_path(self.directory), [{"names": list(n), "sizes": list(s)} for n, s in self.layouts]
            )
        # One float64 buffer, reused: a step allocates nothing of the record's size (allocations
        # between the training step's large ones change glibc's heap reuse and slow the step).
        total = sum(layout[1])
        if self._buffer is None or self._buffer.numel() < total:
            self._buffer = torch.empty(max(total, 1), dtype=torch.float64)
        offset = 0
        for part in parts:
            self._buffer[offset : offset + part.numel()].copy_(part.reshape(-1))
            offset += part.numel()
        with open(records_path(self.directory), "ab") as out:
            out.write(record_header(step, self.layouts.index(layout), total))
            out.write(memoryview(self._buffer[:total].numpy()))  # little-endian float64 (x86, ARM)
