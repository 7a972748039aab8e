"""The completeness marker of a ``dist_checkpointing`` directory, and the check against it.

A torch_dist checkpoint is a directory written by every rank (``__R_I.distcp`` shards,
``common.pt``, then ``.metadata`` and ``metadata.json`` in the finalize step). With the
async writer, files appear while training goes on, so their presence proves nothing. The
marker (``stop_and_go_complete.json``) is written by rank 0 only after every rank's write
and the finalize step are done and every file is fsynced; it lists each file with its size.
A directory counts as complete only if the marker is present and every file matches it.
This module needs no megatron-core: the orchestrator-side checks stay light.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from workers.backends.base import IncompleteCheckpointError

MARKER_NAME = "stop_and_go_complete.json"
MEGATRON_METADATA = "metadata.json"  # written by dist_checkpointing's finalize (save_config)
TORCH_DIST_METADATA = ".metadata"  # written by torch DCP's finish on the coordinator rank


def checkpoint_files(directory: Path) -> dict[str, int]:
    """Every file of a checkpoint directory (recursively, marker excluded) with its size."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MARKER_NAME:
            files[path.relative_to(directory).as_posix()] = path.stat().st_size
    return files


def fsync_tree(directory: Path) -> None:
    """fsyncs every file of ``directory`` and the directories holding them."""
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for folder in [directory, *sorted(p for p in directory.rglob("*") if p.is_dir())]:
        _fsync_dir(folder)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_marker(directory: Path, step: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Makes the finalized checkpoint durable, then writes its marker atomically (rank 0 only)."""
    fsync_tree(directory)
    payload = {
        "format": "torch_dist",
        "step": step,
        "files": checkpoint_files(directory),
        "written_at": time.time(),
        **(extra or {}),
    }
    # Only rank 0 writes it, once: a temporary file renamed into place, no lock file (the
    # directory must hold exactly the listed files plus the marker).
    fd, tmp_name = tempfile.mkstemp(prefix=f".{MARKER_NAME}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; the checkpoint's files are not
        os.replace(tmp_name, directory / MARKER_NAME)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(directory)
    return payload


def remove_marker(directory: Path) -> None:
    """Invalidates a checkpoint before it is overwritten: first the marker, made durable."""
    marker = directory / MARKER_NAME
    if marker.exists():
        marker.unlink()
        _fsync_dir(directory)


def read_marker(directory: Path) -> dict[str, Any]:
    """The marker of a complete checkpoint; raises ``IncompleteCheckpointError`` otherwise."""
    if not directory.is_dir():
        raise IncompleteCheckpointError(f"checkpoint {directory} does not exist (or is not a directory)")
    marker = directory / MARKER_NAME
    try:
        payload = json.loads(marker.read_text())
    except FileNotFoundError:
        raise IncompleteCheckpointError(
            f"checkpoint {directory} is torn (no {MARKER_NAME}: its save never finalized on every rank)"
        ) from None
    except (OSError, ValueError) as err:
        raise IncompleteCheckpointError(f"checkpoint {directory} has an unreadable {MARKER_NAME}: {err}") from err
    if not isinstance(payload, dict) or not isinstance(payload.get("step"), int):
        raise IncompleteCheckpointError(f"checkpoint {directory} has a malformed {MARKER_NAME}")
    if not isinstance(payload.get("files"), dict):
        raise IncompleteCheckpointError(f"checkpoint {directory} has a malformed {MARKER_NAME} (no file list)")
    return payload


def checked_step(directory: Path) -> int:
    """The step of a complete checkpoint directory: marker present, files exactly as listed.

    Raises:
        IncompleteCheckpointError: naming the first thing that is missing or differs.
    """
    payload = read_marker(directory)
    listed: dict[str, int] = payload["files"]
    for required in (MEGATRON_METADATA, TORCH_DIST_METADATA):
        if required not in listed:
            raise IncompleteCheckpointError(f"checkpoint {directory} is torn ({required} is not in its marker)")
    present = checkpoint_files(directory)
    for name, size in listed.items():
        if name not in present:
            raise IncompleteCheckpointError(f"checkpoint {directory} is torn ({name} is missing)")
        if present[name] != size:
            raise IncompleteCheckpointError(
                f"checkpoint {directory} is torn ({name} has {present[name]} bytes, its marker says {size})"
            )
    unexpected = sorted(set(present) - set(listed))
    if unexpected:
        raise IncompleteCheckpointError(
            f"checkpoint {directory} changed after it was finalized (unexpected {', '.join(unexpected)})"
        )
    return payload["step"]
