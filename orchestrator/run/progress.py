"""Per-step progress of the workers, for the live view (torch-free; workers write it).

Each rank of a phase keeps ``RUN_DIR/progress/<label>/rankR.json`` up to date:
``{"rank", "step", "max_steps", "time"}``, written atomically with the protocol's
``write_json_atomic`` (see ``workers.progress.ProgressCallback``). Nothing judges a run by
these files; they only tell a person how far each rank got.
"""

from __future__ import annotations

import os
from typing import Any

from orchestrator.protocol import ProtocolError, progress_dir, read_json


def read_progress(run_dir: str | os.PathLike[str], label: str) -> dict[int, dict[str, Any]]:
    """Every rank's latest progress of one phase, keyed by rank (unreadable files skipped)."""
    out: dict[int, dict[str, Any]] = {}
    directory = progress_dir(run_dir, label)
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("rank*.json")):
        try:
            data = read_json(path)
        except (ProtocolError, OSError):
            continue
        if isinstance(data, dict) and isinstance(data.get("rank"), int):
            out[data["rank"]] = data
    return out
