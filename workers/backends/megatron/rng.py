"""Per-rank random state of a megatron-core run: seeding, capture, restore, and its metric.

Megatron-LM seeds each rank with ``seed + 100 * pp_rank (+ 10 * dp_rank)`` and keeps, on
top of Python's, numpy's and torch's generators, a tracker of named generator states
(``tensor_parallel.get_cuda_rng_tracker()``) that the attention dropout forks. A resume
must give every rank its own states back, the tracker's included.
"""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from megatron.core import parallel_state, tensor_parallel

from workers.kit.rng import rng_states, set_rng_states
from workers.record.fingerprint import exact_digest


def rank_seed(seed: int) -> int:
    """This rank's seed: distinct per pipeline stage and data-parallel rank (as Megatron-LM's
    ``data_parallel_random_init``); tensor-parallel ranks of one replica share it, and the
    tracker's model-parallel state adds the TP rank."""
    return seed + 100 * parallel_state.get_pipeline_model_parallel_rank() + 10 * parallel_state.get_data_parallel_rank()


def seed_rank(seed: int) -> None:
    """Seeds Python, numpy, torch (and CUDA) and megatron's RNG tracker for this rank."""
    seed = rank_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Resets the tracker and adds its data-parallel, model-parallel and expert states.
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def tracker_states() -> dict[str, torch.Tensor]:
    """Megatron's RNG tracker states by name, cloned (CUDA states on GPU, CPU states on CPU)."""
    states = tensor_parallel.get_cuda_rng_tracker().get_states()
    return {name: state.clone() if isinstance(state, torch.Tensor) else state for name, state in states.items()}


def capture_rng_states() -> dict[str, Any]:
    """This process's generator states and megatron's tracker, as tensors and plain data only
    (weights-only loadable): the kit's ``rng_states`` plus ``"tracker"``."""
    return {**rng_states(), "tracker": tracker_states()}


def restore_rng_states(states: dict[str, Any]) -> None:
    """Restores states taken by ``capture_rng_states`` in this process."""
    set_rng_states(states)
    tensor_parallel.get_cuda_rng_tracker().set_states(dict(states["tracker"]))


def get_rng_tracker_digest(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """Metric: a digest of this rank's megatron RNG tracker states (every named state)."""
    states = tracker_states()
    return exact_digest(states[name] for name in sorted(states))
