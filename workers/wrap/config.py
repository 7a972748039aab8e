"""What a wrapped phase asks of the callbacks factory, passed through the environment.

Torch-free: ``workers.wrap.run`` writes it before the script starts; the factory, called
with no arguments from ``Trainer.__init__``, reads it back.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

# Set only inside a wrapped phase; without it the entry point adds nothing.
ENV_WRAP = "STOP_AND_GO_WRAP"


@dataclass(frozen=True)
class WrapConfig:
    """One wrapped phase: where metadata goes, and the options of ``stop-and-go run``."""

    label: str
    mode: str
    metadata_dir: str
    ckpt_dir: str
    checkpoint_every: int | None = None
    check_rng: bool = False
    stop_after_resume: bool = False
    kill_at: str | None = None
    # The default scenario's go1: stop only at a checkpoint of a later epoch (coverage).
    later_epoch: bool = False
    # --kill-during-save: kill the stop once the second checkpoint is partly on disk.
    kill_during_save: bool = False

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> WrapConfig | None:
        """The config of the running phase, or None outside a wrapped phase."""
        raw = os.environ.get(ENV_WRAP)
        return cls(**json.loads(raw)) if raw else None
