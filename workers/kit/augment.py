"""Augmentation drawn in loader workers that resumes: ``WorkerRngState``.

A transform that draws from the global RNG in ``__getitem__`` (random crops, noise, as
torchvision's transforms do) draws in the loader's worker processes when
``num_workers > 0``. Each worker seeds its global generators once, when it starts (from
the loader's base seed and its worker id), and nothing saves them: ``RngStateCallback``
saves the main process's generators only, and torchdata's ``StatefulDataLoader`` saves
the sampler's position and each worker's *dataset* state, not the worker's generators
(``torchdata/stateful_dataloader/worker.py``: ``torch.manual_seed(base_seed + worker_id)``
at start, then only ``dataset.state_dict()``). After a mid-epoch resume the workers
therefore draw the epoch's first augmentations again, for other samples.

``WorkerRngState(dataset)`` puts the worker's Python, numpy and torch generator states in
that dataset state: ``StatefulDataLoader`` snapshots it in the worker after each batch it
hands out (``snapshot_every_n_steps=1``, the default), keeps the snapshot of each worker's
last batch the training loop consumed, and loads it into the restarted worker, which then
draws exactly what it would have drawn. ``ResumableLoader`` is a ``StatefulDataLoader``;
with ``num_workers=0`` the draws are the main process's and the wrapper does nothing
(``RngStateCallback`` covers them).
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset, get_worker_info

# Plain data and tensors: the loader's state goes into a checkpoint loaded with weights_only=True.
from workers.kit.rng import rng_states, set_rng_states


class WorkerRngState(Dataset):
    """Wraps a map-style dataset so its worker's random draws resume with the loader's state.

    Use it as the dataset of a ``StatefulDataLoader`` (``ResumableLoader``):
    ``ResumableLoader(WorkerRngState(train_set), batch_size=..., seed=..., num_workers=2)``.
    Items and length are the wrapped dataset's.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def state_dict(self) -> dict[str, Any]:
        """The worker's generator states (empty in the main process, whose RNG is not ours)."""
        if get_worker_info() is None:
            return {}
        return rng_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the worker's generators as they were after its last consumed batch."""
        if get_worker_info() is not None and state_dict:
            set_rng_states(state_dict)
