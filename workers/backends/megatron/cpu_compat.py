"""CPU behaviour for the few CUDA-only spots megatron-core 0.16 hits on a tiny GPT under gloo.

``apply()`` is called by ``MegatronCoreStrategy`` once the process group exists, and only
when ``torch.cuda.is_available()`` is False; on a GPU nothing here is touched. Each patch
is the smallest change that lets the real megatron-core code run on CPU, and each was
proved necessary by a run that failed without it (``Torch not compiled with CUDA
enabled`` from the named call site):

- ``GlobalMemoryBuffer.get_tensor`` allocates its scratch buffer on
  ``torch.cuda.current_device()``; the CPU version allocates the same buffer on the CPU.
  Hit by the attention's QKV/linear layers of ``get_gpt_layer_local_spec()``.
- the RNG tracker (``tensor_parallel.random``) keeps CUDA generator states and forks them
  around the attention dropout; ``CpuRNGStatesTracker`` keeps and forks torch's CPU
  generator states the same way (one named state per tracker entry, swapped in and out of
  the default CPU generator), so dropout inside ``fork()`` still draws from its own stream.
- ``torch.cuda.synchronize`` (device-to-host staging of the async writer, in
  ``filesystem_async`` and ``async_utils``) becomes a no-op: CPU tensors need no sync.
- ``torch.cuda.current_device`` returns ``"cpu"``: dist_checkpointing builds its small
  all-reduce tensors (async-call bookkeeping, ``async_utils``) on that device, and the
  pipeline's point-to-point code (``p2p_communication``) its shape and receive buffers.
- the pipeline schedules (``pipeline_parallel.schedules.forward_backward_*``) create their
  token counter with a literal ``device="cuda"`` (``total_num_tokens = torch.zeros([],
  ..., device="cuda")``); each schedule runs inside ``CudaFactoriesOnCpu``, a torch
  function mode that turns ``device="cuda"`` into the CPU for tensor factories only.
  Needed for PP > 1 (the model's own forward/backward are untouched).

Nothing else is patched: megatron's optimizer (``get_megatron_optimizer``) and its own DDP
stay unused, since they are CUDA-only; the backend uses torch's Adam and DDP instead.
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_applied = False
SCHEDULES = (
    "forward_backward_no_pipelining",
    "forward_backward_pipelining_without_interleaving",
    "forward_backward_pipelining_with_interleaving",
)


class CpuRNGStatesTracker:
    """Megatron's ``CudaRNGStatesTracker`` contract (add/fork/get_states/set_states) on CPU.

    Each named state is a torch CPU generator state (a ``ByteTensor``); ``fork(name)``
    swaps it into the default CPU generator for the duration of the block, then saves the
    advanced state back and restores the caller's state.
    """

    def __init__(self) -> None:
        self.reset()

    # The tracker API megatron-core calls (names kept as megatron spells them).
    def is_initialized(self) -> bool:
        return self._is_initialized

    def reset(self) -> None:
        self._is_initialized = False
        self.states_: dict[str, torch.Tensor] = {}
        self.seeds_: set[int] = set()

    def get_states(self) -> dict[str, torch.Tensor]:
        return dict(self.states_)

    def set_states(self, states: dict[str, torch.Tensor]) -> None:
        self._is_initialized = True
        self.states_ = dict(states)

    def add(self, name: str, seed: int) -> None:
        self._is_initialized = True
        if seed in self.seeds_:
            raise RuntimeError(f"seed {seed} already exists")
        if name in self.states_:
            raise RuntimeError(f"rng state {name} already exists")
        self.seeds_.add(seed)
        outer = torch.get_rng_state()
        torch.manual_seed(seed)
        self.states_[name] = torch.get_rng_state()
        torch.set_rng_state(outer)

    @contextlib.contextmanager
    def fork(self, name: str = "model-parallel-rng") -> Iterator[None]:
        if name not in self.states_:
            raise RuntimeError(f"rng state {name} is not added")
        outer = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(outer)


def _cpu_get_tensor(self: Any, tensor_shape: Any, dtype: torch.dtype, name: str, mem_alloc_context: Any = None) -> Any:
    """``GlobalMemoryBuffer.get_tensor`` with the buffer on the CPU (same reuse rule)."""
    required = functools.reduce(operator.mul, tensor_shape, 1)
    key = (name, dtype)
    if self.buffer.get(key) is None or self.buffer[key].numel() < required:
        self.buffer[key] = torch.empty(required, dtype=dtype, requires_grad=False)
    return self.buffer[key][0:required].view(*tensor_shape)


def _cpu_synchronize(device: Any = None) -> None:
    """``torch.cuda.synchronize`` on CPU: nothing is asynchronous, so nothing to wait for."""


def _cpu_current_device() -> str:
    """``torch.cuda.current_device`` on CPU: tensors megatron puts there belong on the CPU."""
    return "cpu"


_FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.tensor, torch.arange}


class CudaFactoriesOnCpu(TorchFunctionMode):
    """Creates tensors asked for on ``"cuda"`` on the CPU instead (tensor factories only)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in _FACTORIES and str(kwargs.get("device", "")).startswith("cuda"):
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


def _on_cpu(schedule: Any) -> Any:
    """A pipeline schedule run inside ``CudaFactoriesOnCpu``."""

    @functools.wraps(schedule)
    def run(*args: Any, **kwargs: Any) -> Any:
        with CudaFactoriesOnCpu():
            return schedule(*args, **kwargs)

    return run


def apply() -> bool:
    """Installs the CPU behaviour once, if CUDA is absent; returns whether it is installed."""
    global _applied
    if torch.cuda.is_available():
        return False
    if _applied:
        return True
    from megatron.core import utils as megatron_utils
    from megatron.core.pipeline_parallel import schedules
    from megatron.core.tensor_parallel import random as megatron_random

    megatron_utils.GlobalMemoryBuffer.get_tensor = _cpu_get_tensor
    # get_cuda_rng_tracker() returns this module-level tracker once it is marked initialized.
    megatron_random._CUDA_RNG_STATE_TRACKER = CpuRNGStatesTracker()
    megatron_random._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
    torch.cuda.synchronize = _cpu_synchronize
    torch.cuda.current_device = _cpu_current_device
    # get_forward_backward_func() looks these up in the module when it is called.
    for name in SCHEDULES:
        setattr(schedules, name, _on_cpu(getattr(schedules, name)))
    _applied = True
    return True


def is_applied() -> bool:
    """Whether ``apply()`` installed the CPU behaviour in this process."""
    return _applied
