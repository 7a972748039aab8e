"""Resumable data: a train loader on ``torchdata``'s ``StatefulDataLoader``, sample ids,
and a validation sampler that resumes at the right slice.

Lightning (>= 2.3) saves the state of every train loader that has ``state_dict`` /
``load_state_dict`` in the checkpoint and loads it on resume, worker processes included.
``ResumableLoader`` is such a loader, with a sampler and a generator chosen so that the
restored run draws exactly the samples, in exactly the order, of an uninterrupted run:

- ``ResumableSampler`` shards and shuffles like ``DistributedSampler`` (seed + epoch, the
  same permutation in every process) and keeps its position as a count of samples
  consumed over all ranks, Megatron's ``consumed_samples``. Its state carries the epoch, so
  the order is right although Lightning creates the first iterator of a fit before it
  calls ``set_epoch``; and a position at the end of an epoch is saved as the start of the
  next one, so a checkpoint on an epoch's last batch does not skip the next epoch;
- the loader owns a generator reseeded from ``(seed, epoch)`` at every new iterator: the
  workers' base seed never comes from the global torch RNG, and is the same whether an
  epoch starts in a continuous run or after a resume. The generator is not given to the
  sampler, which needs none (torchdata's own ``RandomSampler`` would share it with the
  base-seed draw and diverge from the next epoch on).

Keeping your own loader: it resumes only if it is a ``StatefulDataLoader`` (or has
``state_dict``/``load_state_dict``) whose sampler order depends on nothing but its state:
give it a ``ResumableSampler`` (or a ``generator=`` seeded from the epoch) and never
``shuffle=True`` with the default ``RandomSampler`` of a plain ``DataLoader``, which seeds
every epoch from the global RNG. Do not call ``trainer.estimated_stepping_batches`` in
``configure_optimizers``: it builds the loader before the checkpoint's loop state is
known, and Lightning then never loads the loader's state (Lightning issue 20550).

Validation: Lightning saves no validation-loader state. A validation over the whole val
set each time needs none; one that walks through it a slice per validation (Megatron's
``eval_iters``) needs its position derived from the restored step: ``RotatingValSampler``
with ``validations_before``.

Counters: the loader state replaces a hand-kept ``consumed_samples`` counter
(``consumed_samples(trainer)`` reads it back). Any other counter a module keeps must live
in a buffer (``register_buffer``) or in ``on_save_checkpoint``/``on_load_checkpoint``: a
plain attribute is lost at every resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import Dataset, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler


def _world() -> tuple[int, int]:
    """(world size, rank) of the initialized process group, else (1, 0)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class ResumableSampler(StatefulDistributedSampler):
    """A seeded, DDP-aware shuffling sampler whose state is the samples consumed by all ranks.

    Args:
        dataset: a map-style dataset.
        seed: the shuffling seed; epoch ``e`` uses the permutation of ``seed + e``.
        shuffle: shuffle (True) or keep the dataset order.
        drop_last: drop the tail that does not split evenly over the ranks (else pad).
        num_replicas, rank: default to the initialized process group (else 1 and 0).
        consumed_samples: start at this position (samples over all ranks since training
            began), for loaders whose state is not restored by Lightning.

    The state (``consumed_samples``, ``epoch``) does not depend on the world size, so a
    resume on another number of ranks continues at the same global sample.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        consumed_samples: int = 0,
    ) -> None:
        world, own_rank = _world()
        super().__init__(
            dataset,
            num_replicas=world if num_replicas is None else num_replicas,
            rank=own_rank if rank is None else rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        if consumed_samples:
            self.seek(consumed_samples)

    @property
    def epoch_size(self) -> int:
        """Samples per epoch over all ranks."""
        return self.num_samples * self.num_replicas

    def consumed_samples(self) -> int:
        """Samples consumed over all ranks since training began (epoch 0, sample 0)."""
        return (self.epoch * self.num_samples + self.yielded) * self.num_replicas

    def seek(self, consumed_samples: int) -> None:
        """Makes the next iteration start at ``consumed_samples`` (its epoch included)."""
        self.epoch, in_epoch = divmod(int(consumed_samples), self.epoch_size)
        self.yielded = 0
        self.next_yielded = in_epoch // self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch; another epoch than the current one starts at its first sample.

        A restored position applies to its own epoch only: Lightning calls this after it
        created the first iterator of a fit, with the epoch it believes it is in.
        """
        if epoch != self.epoch:
            self.yielded = 0
            self.next_yielded = None
        super().set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        if self.next_yielded is None and self.yielded >= self.num_samples:
            self.yielded = 0  # a finished epoch iterated again
        return super().__iter__()

    def state_dict(self) -> dict[str, Any]:
        """The position: at an epoch's end, the next epoch's start (never a finished epoch)."""
        if self.next_yielded is not None:  # restored, not iterated yet
            consumed = (self.epoch * self.num_samples + self.next_yielded) * self.num_replicas
        else:
            consumed = self.consumed_samples()
        return {"consumed_samples": consumed, "epoch": consumed // self.epoch_size, "seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores a position saved by ``state_dict`` (with any number of ranks)."""
        self.seek(state_dict["consumed_samples"])


class ResumableLoader(StatefulDataLoader):
    """A ``StatefulDataLoader`` that shuffles with a ``ResumableSampler`` and owns its generator.

    Use it as a ``DataLoader``: ``ResumableLoader(dataset, batch_size=32, seed=1234,
    num_workers=2)``. ``shuffle`` and ``drop_last`` go to the sampler; pass ``sampler=`` to
    use another (stateful) sampler. Every other argument is ``StatefulDataLoader``'s.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        sampler: Sampler[int] | None = None,
        **kwargs: Any,
    ) -> None:
        if sampler is None:
            sampler = ResumableSampler(dataset, seed=seed, shuffle=shuffle, drop_last=drop_last)
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        super().__init__(
            dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, generator=generator, **kwargs
        )

    def __iter__(self) -> Any:
        # The base seed of the workers is drawn from the generator when an iterator is made.
        epoch = int(getattr(self.sampler, "epoch", 0))
        self.generator.manual_seed(self.seed * 1_000_003 + epoch)
        return super().__iter__()


def _find_consumed(state: Any) -> int | None:
    if isinstance(state, Mapping):
        if "consumed_samples" in state:
            return int(state["consumed_samples"])
        for value in state.values():
            found = _find_consumed(value)
            if found is not None:
                return found
    return None


def consumed_samples(trainer: pl.Trainer, module: pl.LightningModule | None = None) -> int:
    """Samples consumed by training so far over all ranks, read from the train loader's state.

    A metric function (``fn(trainer, module)``) as it stands. Exact with worker processes
    too: the loader's state is the one of the last batch it handed out, not of the batches
    its workers prefetched. 0 before training starts.
    """
    loader = trainer.train_dataloader
    if isinstance(loader, StatefulDataLoader) and getattr(loader, "_iterator", None) is not None:
        found = _find_consumed(loader.state_dict())
        if found is not None:
            return found
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, ResumableSampler):
        return int(sampler.state_dict()["consumed_samples"])
    return 0


# -- sample identity for the ledger ----------------------------------------------------------


class WithSampleIds(Dataset):
    """Wraps a map-style dataset so each item carries its index for the data ledger.

    A mapping item gains the key ``key``; any other item ``x`` becomes ``{key: i, "sample":
    x}``. Without ids the ledger identifies each sample by a hash of its tensors
    (``workers.record.ledger.content_sample_ids``), which needs no change at all but reads
    identical samples as one: wrap a dataset with duplicates.
    """

    def __init__(self, dataset: Dataset, key: str = "idx") -> None:
        self.dataset = dataset
        self.key = key

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        if isinstance(item, Mapping):
            return {**item, self.key: index}
        return {self.key: index, "sample": item}


# -- validation ------------------------------------------------------------------------------


def validations_before(trainer: pl.Trainer) -> int:
    """How many validations came before the current one, from the (restored) global step."""
    steps_per_validation = max(1, int(trainer.val_check_batch) // trainer.accumulate_grad_batches)
    return max(0, trainer.global_step // steps_per_validation - 1)


class RotatingValSampler(Sampler[int]):
    """Each validation sees the next ``per_validation`` samples of the val set, sharded by rank.

    ``position()`` gives the number of validations before this one, read when a validation
    starts; derive it from the restored step (``validations_before``) and a resumed run
    validates on the slice a continuous one does.
    """

    def __init__(
        self,
        size: int,
        per_validation: int,
        position: Callable[[], int],
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        world, own_rank = _world()
        self.size = size
        self.per_validation = per_validation
        self.position = position
        self.num_replicas = world if num_replicas is None else num_replicas
        self.rank = own_rank if rank is None else rank

    def __iter__(self) -> Iterator[int]:
        start = self.position() * self.per_validation
        indices = [(start + i) % self.size for i in range(self.per_validation)]
        return iter(indices[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.per_validation // self.num_replicas
