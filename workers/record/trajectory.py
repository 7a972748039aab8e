"""One rank's trajectory file, as every adapter writes it for the judge.

``trajectory/<phase>/rankR.json``: ``{"rank", "phase", "entries": [{"step", "metrics"}]}``,
replaced atomically, so a kill during a write leaves the previous whole file
(``orchestrator.judge.trajectory`` reads it).
"""

from __future__ import annotations

import os
from typing import Any

from orchestrator.protocol import MetadataLayout, write_json_atomic


def write_trajectory(
    metadata_dir: str | os.PathLike[str], phase: str, rank: int, entries: list[dict[str, Any]]
) -> None:
    """Writes ``entries`` (one per optimizer step: ``{"step": N, "metrics": {...}}``) as the rank's trajectory."""
    write_json_atomic(
        MetadataLayout(metadata_dir).trajectory(phase, rank), {"rank": rank, "phase": phase, "entries": entries}
    )
