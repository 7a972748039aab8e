"""The megatron spec resharded on resume: stop with TP=2, go with TP=1 (or any TP size).

Run it with ``--go-nproc-per-node``: ``python -m orchestrator
harness_specs/megatron_gpt_reshard.py --go-nproc-per-node 1`` stops on 2 ranks with TP=2,
resumes on 1 rank with TP=1, and compares with a continuous TP=2 reference. What a resume
across TP sizes needs, and how this spec provides it:

- every rank is a tensor-parallel shard of one replica (TP = the world size, DP=1), so
  the global batch (``BATCH_SIZE``) is the same for any world size;
  ``STOP_AND_GO_MEGATRON_TP`` / ``STOP_AND_GO_MEGATRON_GO_TP`` override the TP sizes;
- the model and Adam's moments are loaded through ``dist_checkpointing``'s resharding
  (each saved shard carries its global offset; the TP=1 rank reads both shards);
- no dropout: the attention dropout of TP rank ``r`` draws from that rank's tracker
  stream, and two ranks' streams cannot become one. Without it, TP=1 and TP=2 compute
  the same function and differ only by the rounding of the split matrix products and
  the TP all-reduces;
- what is compared: ``full_weights_digest`` / ``full_optimizer_state_digest`` (the full,
  TP-gathered tensors) exactly at the resume point, their norms within rtol 1e-4 at every
  step, the step, learning rates, scheduler, consumed samples and the global sample
  ledger exactly, the loss (mean over ranks) within rtol 1e-4. The built-in weight and
  optimizer digests and norms describe a rank's own shards and are per rank here, as
  are the RNG states (not restored across TP sizes; nothing random is drawn in training).
"""

from __future__ import annotations

import os
from typing import Any

from harness_specs.megatron_gpt_tiny import ENV_GO_TP, ENV_TP, MegatronGPTTinyHarness, TinyGPTModule
from workers import Mode
from workers.backends.megatron.full_state import SHARD_LOCAL_METRICS


class ReshardGPTModule(TinyGPTModule):
    """The tiny GPT without dropout: the same function for every TP size."""

    dropout = 0.0


class MegatronGPTReshardHarness(MegatronGPTTinyHarness):
    """TP over every rank (DP=1); safe to resume with another world size, and so TP size."""

    module_class = ReshardGPTModule
    supports_world_size_change = True

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "megatron_gpt_reshard")
        super().__init__(root_dir, **kwargs)
        # Each rank's built-in weight/optimizer metrics see its own shards: per rank.
        self.metric_scopes.update(dict.fromkeys(SHARD_LOCAL_METRICS, "per_rank"))

    def tensor_model_parallel_size(self, mode: Mode) -> int:
        """The world size (DP=1), unless ``STOP_AND_GO_MEGATRON_TP`` / ``..._GO_TP`` say otherwise."""
        tp = os.environ.get(ENV_TP) or os.environ.get("WORLD_SIZE", "1")
        if mode is Mode.RESUME:
            tp = os.environ.get(ENV_GO_TP) or os.environ.get("WORLD_SIZE", tp)
        return int(tp)
