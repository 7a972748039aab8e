"""GPU hygiene between phases, through NVML (the ``nvidia-ml-py`` package).

A SIGKILLed CUDA process can hold GPU memory for a while after it is gone from the
process table. Before a resumed phase starts on the same GPUs, the orchestrator waits
until no process of the killed phase holds memory on them. Without NVML or without GPUs
(CPU machines) the check is skipped and says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class GpuReleaseCheck:
    """The outcome of waiting for the GPUs to be released."""

    checked: bool
    released: bool
    reason: str = ""
    waited_s: float = 0.0
    holders: dict[int, list[int]] = field(default_factory=dict)  # GPU index -> pids still holding memory

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def visible_gpu_indices(env: dict[str, str] | None = None) -> list[int] | None:
    """The GPU indices ``CUDA_VISIBLE_DEVICES`` pins the run to (None: not pinned)."""
    value = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    if value is None or not value.strip():
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:  # UUIDs or MIG names: NVML lookups by index do not apply
        return None


def _holders(nvml: Any, pids: set[int], indices: list[int]) -> dict[int, list[int]]:
    held: dict[int, list[int]] = {}
    for index in indices:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        running = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        owners = sorted(p.pid for p in running if p.pid in pids)
        if owners:
            held[index] = owners
    return held


def wait_for_gpu_release(pids: Iterable[int], timeout_s: float, poll_s: float = 0.5) -> GpuReleaseCheck:
    """Waits until none of ``pids`` holds memory on the run's GPUs, at most ``timeout_s``."""
    try:
        import pynvml as nvml  # optional at run time: only GPU machines need it
    except ImportError:
        return GpuReleaseCheck(checked=False, released=True, reason="nvidia-ml-py is not installed")
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as err:
        return GpuReleaseCheck(checked=False, released=True, reason=f"no NVML here ({err})")
    started = time.monotonic()
    try:
        count = nvml.nvmlDeviceGetCount()
        if count == 0:
            return GpuReleaseCheck(checked=False, released=True, reason="no GPU")
        indices = visible_gpu_indices() or list(range(count))
        wanted = set(pids)
        held = _holders(nvml, wanted, indices)
        while held and time.monotonic() - started < timeout_s:
            time.sleep(poll_s)
            held = _holders(nvml, wanted, indices)
        return GpuReleaseCheck(
            checked=True,
            released=not held,
            reason="" if not held else f"GPU memory still held after {timeout_s:g}s",
            waited_s=time.monotonic() - started,
            holders=held,
        )
    finally:
        nvml.nvmlShutdown()
