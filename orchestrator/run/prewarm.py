"""The orchestrator's side of a pre-warmed phase (issue 15; the workers' side: ``workers.prewarm``).

The next phase's torchrun starts while the current phase runs, its workers import
everything and wait for ``RunLayout.go_ahead(label)``. The runner writes that file only
when the phase is due: after the previous phase's tree is confirmed dead (and its GPU
memory released). The pre-warmed processes carry their own phase tag
(``protocol.phase_tag``) and session, so killing the current phase leaves them alone.

Only the local single-agent launcher pre-warms; the multi-node and Slurm launchers start
each phase when it is due (their agents rendezvous across nodes or wait for an
allocation, so an early start would hold resources the running phase needs).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from typing import Any

from orchestrator.protocol import RunLayout, read_json, read_results, write_json_atomic
from orchestrator.run.launcher import Launcher, PhaseHandle


def can_prewarm(launcher: Launcher, wanted: bool) -> bool:
    """Whether phases of this run start early: asked for, and the launcher supports it."""
    return wanted and bool(getattr(launcher, "supports_prewarm", False))


def reference_room(options: Any, launcher: Launcher) -> bool:
    """Whether the continuous reference runs alongside stop and go (``--concurrent-reference``).

    ``auto``: on a CPU-only machine with cores for both at once (4 per rank: each phase's
    ranks, and a pre-warmed phase importing next to them); never on a GPU machine, where it
    would need GPUs disjoint from the phases' (the suite's packer gives whole runs those).
    """
    mode = getattr(options, "concurrent_reference", "auto")
    if mode == "never" or not getattr(launcher, "supports_prewarm", False):
        return False
    if mode == "always":
        return True
    return shutil.which("nvidia-smi") is None and (os.cpu_count() or 1) >= 4 * options.world_size


def give_go_ahead(layout: RunLayout, label: str) -> float:
    """Lets the pre-warmed workers of ``label`` start training; returns the time written."""
    now = time.time()
    write_json_atomic(layout.go_ahead(label), {"label": label, "time": now})
    return now


def next_labels(labels: list[str], optional: set[str] | frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Which phases warm while which runs: each label's successor in ``labels``.

    An ``optional`` successor (one the runner may drop once the current phase has told it
    enough, like the default scenario's ``go1``) warms together with the phase after it,
    so that whichever runs next is warm (on a small machine the runner starts the optional
    one only once ``later_epoch_possible`` says that it can run at all).
    """
    following: dict[str, list[str]] = {}
    for i, label in enumerate(labels[:-1]):
        nxt = [labels[i + 1]]
        if labels[i + 1] in optional and i + 2 < len(labels):
            nxt.append(labels[i + 2])
        following[label] = nxt
    return following


def defer_optional(options: Any) -> bool:
    """Whether an optional phase (``go1``) warms only once it is known to run at all.

    Where the cores are fewer than the ranks of the three phases that would import at
    once (stop, go and go1), warming a go1 that a one-epoch run never needs slows stop and
    go down; with cores to spare it warms from stop's launch, so that it is warm in time.
    """
    ranks = max(options.nproc_per_node, options.go_nproc_per_node or 0)
    return (os.cpu_count() or 1) < 3 * ranks


def later_epoch_possible(layout: RunLayout, label: str) -> bool | None:
    """Whether ``label`` can stop with a checkpoint of a later epoch ahead (None: not told yet).

    Its rank 0 writes ``RunLayout.outlook`` at its train start (``workers.checkpoints``);
    a schedule it could not read counts as possible. Where there is none (a run of one
    epoch), the default scenario's ``go1`` never runs: warming it would only load the
    machine while stop runs (on a GPU node: one more set of ranks importing NeMo).
    """
    data = read_json(layout.outlook(label))
    if data is None:
        return None
    later = data.get("later_epoch_checkpoints")
    return later is None or bool(later)


# The outcomes of pre-warmed phases killed before their go-ahead: they trained nothing.
KILLED_BEFORE_GO_AHEAD = "killed before its go-ahead"  # the run ended first
NOT_NEEDED = "not needed"  # an optional phase (go1) dropped before it started
NEVER_RELEASED = (KILLED_BEFORE_GO_AHEAD, NOT_NEEDED)


def kill_warm(proc: PhaseHandle, record: Any, layout: RunLayout, outcome: str) -> Any:
    """Kills one pre-warmed phase that will never get its go-ahead; returns its filled-in record."""
    record.kill = proc.kill(signal.SIGKILL, 5.0).to_dict()
    record.exit_code = proc.reap()
    record.wall_s = time.monotonic() - proc.started
    record.outcome = outcome
    proc.pids_seen.update(r.pid for r in read_results(layout, proc.phase).values())
    record.pids = sorted(proc.pids_seen)
    return record


def kill_unreleased(warm: dict[str, tuple[PhaseHandle, Any]], layout: RunLayout) -> list[Any]:
    """Kills every pre-warmed phase that never got its go-ahead (the run ended first).

    ``warm`` maps labels to (handle, ``PhaseRecord``); it is emptied, and the records,
    filled in with the kill, are returned for the report.
    """
    records = [kill_warm(proc, record, layout, KILLED_BEFORE_GO_AHEAD) for proc, record in warm.values()]
    warm.clear()
    return records
