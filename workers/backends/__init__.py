"""Training backends: the seam between shared stop-and-go code and a training stack.

A backend knows how its stack writes checkpoints (file or sharded directory), how to
tell a whole checkpoint from a torn one, how to tear one on purpose for
``--kill-during-save``, and how to start a fit that resumes from a checkpoint. Metrics,
metadata, the sentinel and the integrity checks are the same code for every backend.

- ``lightning`` (``workers.backends.lightning``): Lightning's ``.ckpt`` files; the default.
- ``megatron`` (``workers.backends.megatron``): a megatron-core model under a Lightning
  strategy that checkpoints with ``megatron.core.dist_checkpointing`` (sharded per rank).
- ``nemo2`` (``workers.backends.nemo2``): NeMo 2's ``llm.train`` with ``MegatronStrategy``,
  ``AutoResume`` and ``NeMoLogger``, the seed's own path.

A spec picks one with the harness's ``backend`` attribute; the orchestrator never knows.
"""

from workers.backends.base import Backend, IncompleteCheckpointError, TornCheckpointError

__all__ = ["Backend", "IncompleteCheckpointError", "TornCheckpointError"]
