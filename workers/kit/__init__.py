"""The resumability kit: the parts a plain Lightning setup needs to resume exactly.

- ``ResumableLoader``: a ``torchdata`` ``StatefulDataLoader`` with a seeded, DDP-aware
  ``ResumableSampler``; Lightning saves and restores its state (workers included);
- ``RngStateCallback``: every rank's Python / numpy / torch / CUDA RNG state in the
  checkpoint, loadable with ``weights_only=True``;
- ``WorkerRngState``: augmentation drawn in loader workers (``num_workers > 0``) that
  resumes: each worker's generators saved with the loader's state;
- ``WithSampleIds``: sample ids for the data ledger (else it hashes each sample's tensors);
- ``RotatingValSampler`` + ``validations_before``: validation walking through the val set
  that resumes at the right slice; ``consumed_samples(trainer)``: the loader's position.

See ``workers.kit.data`` for what each part handles (and when you need none of them), and
``python -m workers.doctor SPEC.py`` for what in a setup will not resume.
"""

from workers.kit.augment import WorkerRngState
from workers.kit.data import (
    ResumableLoader,
    ResumableSampler,
    RotatingValSampler,
    WithSampleIds,
    consumed_samples,
    validations_before,
)
from workers.kit.rng import RngStateCallback, gather_rng_states, rng_states, seed_rank, set_rng_states

__all__ = [
    "ResumableLoader",
    "ResumableSampler",
    "RngStateCallback",
    "RotatingValSampler",
    "WithSampleIds",
    "WorkerRngState",
    "consumed_samples",
    "gather_rng_states",
    "rng_states",
    "seed_rank",
    "set_rng_states",
    "validations_before",
]
