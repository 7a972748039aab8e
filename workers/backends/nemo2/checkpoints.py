"""NeMo 2's checkpoint layout, and whether one of its checkpoints is whole.

NeMo's ``ModelCheckpoint`` with ``MegatronStrategy`` saves each checkpoint as a directory
(the Lightning file name without ``.ckpt``; the ``last`` one ends in ``-last``)::

    <name>--reduced_train_loss=1.2345-epoch=0-consumed_samples=8.0-last/
        weights/        megatron-core dist_checkpointing, torch_dist format:
            __0_0.distcp ...   the tensors (one or more files per rank)
            .metadata          torch.distributed.checkpoint's index (where each tensor lies)
            common.pt          the non-sharded state: global_step, loops, callbacks, ...
            metadata.json      dist_checkpointing's format record (written last)
        context/        the fiddle-serialized trainer, model and data (io.json, model.yaml)
    <name>...-last-unfinished   NeMo's marker file, beside the directory

The order NeMo writes them in: the ``-unfinished`` marker first (rank 0, then a barrier),
then ``weights/`` (``metadata.json`` last), then ``context/`` (rank 0), and the marker is
removed last, after a barrier, in the save's finalize step (for an async save, when the
background write is finalized). NeMo also sets the marker before deleting an old
checkpoint and removes it after. So a checkpoint whose marker still exists was never
finished (or is half deleted); a kill before the marker was written leaves no directory.

A checkpoint is trusted here only when the marker is absent *and* every file the layout
promises is there and as long as its index says: ``metadata.json`` parses,
``.metadata`` loads and every byte range it records lies inside its file, ``common.pt``
loads and holds the global step, and ``context/io.json`` exists. That catches tears the
marker cannot (a file truncated after the save, by a full disk or a copy cut short).

This module imports neither NeMo nor megatron-core, so it can vet checkpoints anywhere.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from workers.backends.base import IncompleteCheckpointError

UNFINISHED_SUFFIX = "-unfinished"
LAST_SUFFIX = "-last"
WEIGHTS_DIR = "weights"
CONTEXT_DIR = "context"
DCP_METADATA = ".metadata"
COMMON_STATE = "common.pt"
FORMAT_RECORD = "metadata.json"
CONTEXT_RECORD = "io.json"

_NUMBER_IN_NAME = re.compile(r"(?:consumed_samples|step)=(\d+(?:\.\d+)?)")


def checkpoint_dir(path: str | os.PathLike[str]) -> Path:
    """The checkpoint directory of ``path`` as Lightning or NeMo name it.

    Lightning's ``ModelCheckpoint`` records ``<dir>.ckpt``; ``trainer.ckpt_path`` after an
    ``AutoResume`` is ``<dir>/weights``. Both mean ``<dir>``.
    """
    path = Path(path)
    if path.name == WEIGHTS_DIR:
        return path.parent
    if path.suffix == ".ckpt":
        return path.with_suffix("")
    return path


def unfinished_marker(path: str | os.PathLike[str]) -> Path:
    """NeMo's ``-unfinished`` marker of a checkpoint (the same rule as NeMo's own)."""
    base = str(checkpoint_dir(path)).removesuffix("-EMA")
    return Path(base + UNFINISHED_SUFFIX)


def is_last(path: Path) -> bool:
    """Whether ``path`` is a ``-last`` checkpoint directory."""
    return checkpoint_dir(path).name.endswith(LAST_SUFFIX)


def number_in_name(path: Path) -> float:
    """The ``consumed_samples=`` (or ``step=``) value in a checkpoint's name, or -1."""
    match = _NUMBER_IN_NAME.search(checkpoint_dir(path).name)
    return float(match.group(1)) if match else -1.0


def _check_format_record(weights: Path) -> None:
    record = weights / FORMAT_RECORD
    if not record.is_file():
        raise IncompleteCheckpointError(f"checkpoint {weights.parent} is torn: {record.name} is missing")
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError) as err:
        raise IncompleteCheckpointError(f"checkpoint {weights.parent} is torn: {record.name}: {err}") from err
    if not isinstance(data, dict) or "sharded_backend" not in data:
        raise IncompleteCheckpointError(f"checkpoint {weights.parent} is torn: {record.name} has no sharded_backend")


def _load_dcp_metadata(weights: Path) -> Any:
    index = weights / DCP_METADATA
    if not index.is_file():
        raise IncompleteCheckpointError(f"checkpoint {weights.parent} is torn: weights/{DCP_METADATA} is missing")
    try:
        with open(index, "rb") as handle:
            return pickle.load(handle)  # torch.distributed.checkpoint writes it with pickle
    except Exception as err:  # any failure to read the index means torn
        raise IncompleteCheckpointError(f"checkpoint {weights.parent} is torn: weights/{DCP_METADATA}: {err}") from err


def check_shard_files(weights: Path) -> int:
    """Checks that every byte range ``.metadata`` records lies inside its shard file.

    Returns the number of shard files checked; raises ``IncompleteCheckpointError`` for a
    missing or short file.
    """
    metadata = _load_dcp_metadata(weights)
    storage = getattr(metadata, "storage_data", None)
    if not isinstance(storage, dict) or not storage:
        raise IncompleteCheckpointError(f"checkpoint {weights.parent} is torn: weights/{DCP_METADATA} lists no data")
    needed: dict[str, int] = {}
    for info in storage.values():
        end = int(info.offset) + int(info.length)
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), end)
    for name, end in sorted(needed.items()):
        shard = weights / name
        try:
            size = shard.stat().st_size
        except FileNotFoundError:
            raise IncompleteCheckpointError(f"checkpoint {weights.parent} is torn: weights/{name} is missing") from None
        if size < end:
            raise IncompleteCheckpointError(
                f"checkpoint {weights.parent} is torn: weights/{name} has {size} bytes, its index needs {end}"
            )
    return len(needed)


def common_state(weights: Path) -> dict[str, Any]:
    """The non-sharded state NeMo saved (``weights/common.pt``)."""
    common = weights / COMMON_STATE
    if not common.is_file():
        raise IncompleteCheckpointError(f"checkpoint {weights.parent} is torn: weights/{COMMON_STATE} is missing")
    try:
        state = torch.load(common, map_location="cpu", weights_only=False)
    except Exception as err:  # any failure to load means torn
        raise IncompleteCheckpointError(f"checkpoint {weights.parent} is torn: weights/{COMMON_STATE}: {err}") from err
    if not isinstance(state, dict):
        raise IncompleteCheckpointError(f"checkpoint {weights.parent}: weights/{COMMON_STATE} is not a dict")
    return state


def nemo_checkpoint_step(path: str | os.PathLike[str]) -> int:
    """The global step of a whole NeMo 2 checkpoint; raises ``IncompleteCheckpointError`` otherwise."""
    directory = checkpoint_dir(path)
    if not directory.is_dir():
        raise IncompleteCheckpointError(f"checkpoint {directory} does not exist")
    marker = unfinished_marker(directory)
    if marker.exists():
        raise IncompleteCheckpointError(
            f"checkpoint {directory} is unfinished: NeMo's marker {marker.name} is still there "
            "(the save, or its async finalize, or a deletion was interrupted)"
        )
    weights = directory / WEIGHTS_DIR
    if not weights.is_dir():
        raise IncompleteCheckpointError(f"checkpoint {directory} is torn: no {WEIGHTS_DIR}/ directory")
    _check_format_record(weights)
    check_shard_files(weights)
    step = common_state(weights).get("global_step")
    if not isinstance(step, int):
        raise IncompleteCheckpointError(f"checkpoint {directory}: weights/{COMMON_STATE} has no global_step")
    if not (directory / CONTEXT_DIR / CONTEXT_RECORD).is_file():
        raise IncompleteCheckpointError(f"checkpoint {directory} is torn: {CONTEXT_DIR}/{CONTEXT_RECORD} is missing")
    return step


def nemo_candidates(directory: Path) -> list[Path]:
    """NeMo checkpoint directories in ``directory``, newest first, ``-last`` before its twin."""
    if not directory.is_dir():
        return []
    found = [
        p
        for p in directory.iterdir()
        if p.is_dir() and not p.name.endswith("-EMA") and ((p / WEIGHTS_DIR).exists() or unfinished_marker(p).exists())
    ]
    return sorted(found, key=lambda p: (number_in_name(p), is_last(p), p.name), reverse=True)


def autoresume_choice(directory: Path) -> Path | None:
    """The ``-last`` checkpoint ``AutoResume(resume_if_exists=True)`` picks in ``directory``.

    NeMo's rule (``AutoResume._find_trainer_ckpt_path``): the ``*last`` directories
    without an ``-unfinished`` marker; of several, the one with the newest mtime. None
    when there is none (NeMo then raises or starts from scratch).
    """
    if not directory.is_dir():
        return None
    lasts = [p for p in directory.iterdir() if p.is_dir() and p.match("*last") and not unfinished_marker(p).exists()]
    if not lasts:
        return None
    return max(lasts, key=lambda p: p.lstat().st_mtime)


def fsync_tree(directory: Path) -> None:
    """Makes every file and directory entry of a checkpoint durable."""
    for root, _dirs, files in os.walk(directory):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
