"""The waiting side of a pre-warmed phase: imports done, wait for the orchestrator's go-ahead.

The orchestrator starts the next phase's torchrun while the current phase still runs, with
``ENV_GO_AHEAD`` naming a file (``RunLayout.go_ahead``). The worker entry loads the spec
(torch, lightning, the backend, the spec module: the slow part of a phase's start) and
then calls ``wait_for_go_ahead`` before it builds the harness, so that until the previous
phase is confirmed dead it touches no GPU, no checkpoint and no process group (Lightning
creates the process group inside ``trainer.fit``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from orchestrator.protocol import ENV_GO_AHEAD

POLL_INTERVAL_S = 0.005


def wait_for_go_ahead(poll_s: float = POLL_INTERVAL_S) -> float | None:
    """Blocks until the go-ahead file exists; returns when it was seen (None: not pre-warmed).

    There is no timeout here: a go-ahead that never comes means the orchestrator kills
    this phase (or dies, and PR_SET_PDEATHSIG ends the workers with their agent).
    """
    raw = os.environ.get(ENV_GO_AHEAD)
    if not raw:
        return None
    path = Path(raw)
    while not path.exists():
        time.sleep(poll_s)
    return time.time()
