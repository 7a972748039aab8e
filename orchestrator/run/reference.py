"""Sharing one continuous reference between runs whose reference is the same (issue 15).

``--reference-from DIR`` reuses the finished continuous reference of the run in DIR
instead of running one. That is sound only when the two continuous runs are the same:
the caller (``self-test``: a mutant declares the base it shares, ``SHARES_REFERENCE``)
vouches for the spec; this module refuses a reference made with other code (the digest
of ``orchestrator/`` and ``workers/``) or another world size.

``reference_key`` is the digest of everything that determines a continuous run: the spec
file's bytes, the harness class, the ranks and the code. Callers cache references under it.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from orchestrator.protocol import PHASE_CONTINUOUS, RunLayout, read_json, read_results

REPO = Path(__file__).resolve().parents[2]
_CODE_DIRS = ("orchestrator", "workers")


class SharedReferenceError(ValueError):
    """A ``--reference-from`` directory that cannot serve as this run's reference."""


@cache
def code_digest() -> str:
    """The digest of every ``.py`` file of the orchestrator and the workers (path and bytes)."""
    digest = hashlib.sha256()
    for top in _CODE_DIRS:
        for path in sorted((REPO / top).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def reference_key(spec: Path, harness: str | None, nproc_per_node: int, nnodes: int = 1) -> str:
    """The digest of what determines a continuous reference run (never equal across a code change)."""
    digest = hashlib.sha256()
    for part in (
        spec.read_bytes(),
        str(harness).encode(),
        f"{nproc_per_node}x{nnodes}".encode(),
        code_digest().encode(),
    ):
        digest.update(part + b"\0")
    return digest.hexdigest()[:16]


def shared_reference(run_dir: Path, world_size: int) -> tuple[str, dict[str, Any]]:
    """The metadata dir of the finished reference in ``run_dir`` and what it was; raises if unusable."""
    layout = RunLayout(run_dir)
    run = read_json(layout.run_json)
    if not isinstance(run, dict):
        raise SharedReferenceError(f"--reference-from {run_dir}: not an orchestrator run dir (no run.json)")
    if run.get("code_digest") != code_digest():
        raise SharedReferenceError(f"--reference-from {run_dir}: made by other orchestrator/workers code")
    results = read_results(layout, PHASE_CONTINUOUS)
    if len(results) != world_size or any(r.status != "ok" for r in results.values()):
        raise SharedReferenceError(
            f"--reference-from {run_dir}: no finished {world_size}-rank continuous reference there"
        )
    metadata_dir = results[min(results)].metadata_dir
    assert metadata_dir is not None
    return metadata_dir, {"run_dir": str(run_dir), "spec": run.get("spec"), "key": run.get("reference_key")}
