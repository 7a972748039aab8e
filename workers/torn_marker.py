"""``--kill-during-save``'s two steps, the same in every backend: announce the torn save, wait for the kill.

Lightning-free, so the plain PyTorch instrumentation (``workers.plain``) shares them with
the Lightning, Megatron and NeMo 2 tearing paths.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NoReturn

from orchestrator.protocol import write_json_atomic


def announce_torn_save(marker: Path, facts: dict[str, Any]) -> None:
    """Tells the orchestrator a save is torn on disk: the save marker, stamped ``written_at``."""
    write_json_atomic(marker, {**facts, "written_at": time.time()})


def wait_to_be_killed(wait_for_kill_s: float, what: str) -> NoReturn:
    """Waits for the orchestrator's kill; raises if it does not come in time."""
    deadline = time.monotonic() + wait_for_kill_s
    while time.monotonic() < deadline:
        time.sleep(0.05)
    raise RuntimeError(f"not killed within {wait_for_kill_s:g}s while {what}")
