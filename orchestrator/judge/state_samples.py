"""The state-samples file: per step, the sampled elements of every state tensor of a rank.

Written by the workers (``workers.record.state``), read by the judge
(``orchestrator.judge.state_compare``); torch-free (numpy only, imported lazily).

Per phase and rank, in the harness's metadata directory::

    state/<phase>/rank<R>/layouts.json   [{"names": [...], "sizes": [...]}, ...]
    state/<phase>/rank<R>/samples.bin    records, appended one per optimizer step

A record is four little-endian int64 (``MAGIC``, step, layout index, value count) and then
that many float64 values: the tensors of the layout in order, each its ``size`` samples.
One file appended per step keeps the cost of a step to one ``write`` whatever the number
of tensors. A record torn by a kill is the file's last and is ignored on reading; the
layout file is written (atomically) before the first record that uses a new layout.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

MAGIC = 0x5354415445534D50  # "STATESMP"
HEADER = struct.Struct("<qqqq")


def samples_dir(metadata_dir: str | os.PathLike[str], phase: str, rank: int) -> Path:
    """The directory of a rank's state samples in ``phase``."""
    return Path(metadata_dir) / "state" / phase / f"rank{rank}"


def layouts_path(directory: Path) -> Path:
    return directory / "layouts.json"


def records_path(directory: Path) -> Path:
    return directory / "samples.bin"


def record_header(step: int, layout: int, count: int) -> bytes:
    """The header of one record of ``count`` float64 values."""
    return HEADER.pack(MAGIC, step, layout, count)


def read_samples(
    metadata_dir: str | os.PathLike[str], phase: str, rank: int, steps: set[int] | None = None
) -> dict[int, dict[str, Any]]:
    """The samples by step, then by tensor name (numpy float64 arrays); ``{}`` without a file.

    With ``steps``, only those steps are decoded. A step recorded twice keeps its last record.
    """
    import numpy as np

    directory = samples_dir(metadata_dir, phase, rank)
    try:
        layouts = json.loads(layouts_path(directory).read_text())
        data = records_path(directory).read_bytes()
    except (OSError, ValueError):
        return {}
    found: dict[int, dict[str, Any]] = {}
    offset = 0
    while offset + HEADER.size <= len(data):
        magic, step, layout, count = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + 8 * count
        if magic != MAGIC or end > len(data) or not 0 <= layout < len(layouts):
            break  # a torn last record (or a foreign file): what came before stands
        if steps is None or step in steps:
            values = np.frombuffer(data, dtype="<f8", count=count, offset=offset + HEADER.size)
            names, sizes = layouts[layout]["names"], layouts[layout]["sizes"]
            bounds = np.cumsum([0, *sizes])
            found[step] = {name: values[bounds[i] : bounds[i + 1]] for i, name in enumerate(names)}
        offset = end
    return found
