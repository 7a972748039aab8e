"""The ``megatron`` backend: a megatron-core model trained under Lightning, checkpointed with
``megatron.core.dist_checkpointing`` (torch_dist, sharded per rank, async writer).

- ``MegatronCoreStrategy`` (``strategy``): Lightning DDP over megatron's parallel state;
  saves and loads on every rank; per-rank RNG as ``ShardedObject``s.
- ``MegatronBackend`` (``backend``): the harness seam: completeness markers, candidates,
  the directory ``ModelCheckpoint``, ``--kill-during-save`` on the async writer.
- ``cpu_compat``: CPU behaviour for megatron-core's CUDA-only spots, applied only without CUDA.
- ``get_rng_tracker_digest`` (``rng``): the metric of each rank's megatron RNG tracker.
- ``full_state``: metrics of the full (TP-gathered) weights and optimizer state, the same
  for any TP size (the built-in ones see a rank's shards).

Needs the ``megatron`` extra: ``pip install -e '.[megatron]'``.
"""

from workers.backends.megatron.backend import DirectoryModelCheckpoint, KillDuringAsyncSaveCallback, MegatronBackend
from workers.backends.megatron.rng import get_rng_tracker_digest
from workers.backends.megatron.strategy import MegatronCoreStrategy

__all__ = [
    "DirectoryModelCheckpoint",
    "KillDuringAsyncSaveCallback",
    "MegatronBackend",
    "MegatronCoreStrategy",
    "get_rng_tracker_digest",
]
