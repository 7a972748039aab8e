"""The file protocol between the orchestrator (parent) and the torchrun workers.

Both sides import this module; it must never import torch or lightning.

Every file that crosses the boundary is JSON, written atomically (temporary file in the
same directory, ``fsync``, ``os.replace``, ``fsync`` of the directory) while holding a
``filelock.FileLock`` on ``<file>.lock``, and read under the same lock. A reader therefore
sees either the previous complete document or the new complete document, never a torn one.

Run-directory layout (``RunLayout``)::

    RUN_DIR/
      run.json                 orchestrator: spec, arguments, phases, pids
      orchestrator.lock        held by the orchestrator for the whole run
      phases/<label>.json      orchestrator: the plan of each phase (mode, kill point, ...)
      sentinel.json            rank 0 of a stopping run: "checkpoint of step N is complete"
      sentinels/<label>.json   the sentinel of each stopping phase, kept once handled
      saving.json              rank 0, --kill-during-save: "a checkpoint write is half done"
      stacks/<label>/rankR.txt Python stacks of every thread, dumped on SIGUSR1 (hangs)
      results/<label>/rankR.json   worker entry: status, pid, error, wall time
      logs/<phase>.log         the phase's combined output (torchrun ``[defaultR]:`` prefixes)
      logs/<phase>/            torchrun's own per-rank logs
      harness/                 root_dir of the stop and go harness (checkpoints, metadata)
      reference/               root_dir of the continuous reference harness
      report.json              the verdict (also where ``--json-report`` points by default)

Inside a harness's metadata directory (``root_dir / exp_name``, see ``MetadataLayout``)::

      metadata/stepS/rankR.json    metrics of the state each checkpoint holds, per rank
      resume_check/<label>/rankR.json   saved vs resumed metrics of a resumed phase
      trajectory/<label>/rankR.json     per-step metrics of one phase, per rank

A phase is named by its *label*: ``stop``, ``go1`` ... ``go<N-1>`` (resumed phases that
stop again, with ``--cycles N``), ``go`` (the final resumed phase) and ``continuous``.

Environment variables the orchestrator sets for workers (torchrun passes them through,
the way it passes ``RANK`` and ``WORLD_SIZE``) are named by the ``ENV_*`` constants.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

PROTOCOL_VERSION = 1

# The run directory of the current orchestrator run; callbacks put the sentinel there.
ENV_RUN_DIR = "STOP_AND_GO_RUN_DIR"
# A unique id of the run; every worker process carries it, so the orchestrator can find
# processes that escaped the tree (re-parented daemons) by their environment.
ENV_RUN_ID = "STOP_AND_GO_RUN_ID"
# How long stop workers wait to be killed after writing the sentinel before raising.
ENV_WAIT_FOR_KILL_S = "STOP_AND_GO_WAIT_FOR_KILL_S"
# The label of the phase a worker runs (set by the worker entry from its --phase).
ENV_PHASE_LABEL = "STOP_AND_GO_PHASE_LABEL"
# Set on a pre-warmed phase: the file (``RunLayout.go_ahead``) its workers wait for after
# their imports and before they touch a GPU, a checkpoint or a process group.
ENV_GO_AHEAD = "STOP_AND_GO_GO_AHEAD"

# How long a reader or writer waits for a protocol file's lock.
LOCK_TIMEOUT_S = 30.0

# Modes (and the labels of the three phases of a one-cycle run).
PHASE_STOP = "stop"
PHASE_GO = "go"
PHASE_CONTINUOUS = "continuous"
PHASES = (PHASE_STOP, PHASE_GO, PHASE_CONTINUOUS)


class ProtocolError(RuntimeError):
    """A protocol file is missing fields or is not valid JSON."""


def _lock_for(path: Path) -> FileLock:
    return FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every filesystem allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomic(path: str | os.PathLike[str], payload: Any) -> Path:
    """Writes ``payload`` as JSON to ``path`` atomically, under the file's lock.

    The document is written to a temporary file in the same directory, flushed and
    fsynced, then moved over ``path`` with ``os.replace``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=True)
    with _lock_for(target):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(target.parent)
    return target


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """Reads a protocol JSON file under its lock; returns None when it does not exist."""
    target = Path(path)
    if not target.exists():
        return None
    with _lock_for(target):
        try:
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ProtocolError(f"{target} is not valid JSON: {err}") from err


def _from_dict(cls: Any, data: dict[str, Any], what: str) -> Any:
    # Unknown keys are ignored so that a newer writer does not break an older reader.
    try:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
    except TypeError as err:
        raise ProtocolError(f"incomplete {what}: {err}") from err


@dataclass
class PhasePlan:
    """What the orchestrator asks of one phase; read by the workers at start.

    Attributes:
        label: the phase's name (directory names use it).
        mode: ``stop``, ``go`` or ``continuous`` (the harness ``Mode`` value).
        stop_after_resume: a resumed phase that stops again (the middle of ``--cycles``).
        kill_at: stop at this global step (``"7"``) or at a step drawn from a seed
            (``"random:SEED"``) instead of at the first checkpointed validation.
        kill_during_save: stop halfway through writing ``last.ckpt`` of the second
            checkpoint, leaving it torn on disk.
        nproc_per_node: workers per node of this phase (None: the run's ``--nproc-per-node``).
        checkpoint_world_size: set on a resumed phase whose checkpoint was written by a
            different number of ranks (``--go-nproc-per-node``): that number.
    """

    label: str
    mode: str
    stop_after_resume: bool = False
    kill_at: str | None = None
    # With stop_after_resume: stop at the first checkpoint of a later epoch than the resumed
    # one (the default scenario's go1: coverage of a resume after an epoch boundary).
    stop_in_later_epoch: bool = False
    kill_during_save: bool = False
    nproc_per_node: int | None = None
    checkpoint_world_size: int | None = None

    @property
    def stops(self) -> bool:
        """Whether this phase ends by being killed (it writes a sentinel or save marker)."""
        return self.mode == PHASE_STOP or self.stop_after_resume

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhasePlan:
        return _from_dict(cls, data, "phase plan")

    @classmethod
    def default_for(cls, label: str) -> PhasePlan:
        """The plan of a phase launched without one: the label is the mode."""
        if label not in PHASES:
            raise ProtocolError(f"no plan for phase {label!r} and it is not one of {', '.join(PHASES)}")
        return cls(label=label, mode=label)


@dataclass
class Sentinel:
    """Written by rank 0 of a stopping run once the metadata and the checkpoint are complete.

    ``step`` is the step of the checkpoint a resume will start from; ``stopped_at`` is
    the step training had reached when it stopped (later than ``step`` with ``--kill-at``).
    """

    step: int
    checkpoint_path: str
    metadata_dir: str
    world_size: int
    pid: int
    label: str = PHASE_STOP
    stopped_at: int | None = None
    written_at: float = field(default_factory=time.time)
    protocol_version: int = PROTOCOL_VERSION
    # What the stopping worker knows of the resume point (``ResumePoint`` keys: epoch,
    # batch_in_epoch, batches_per_epoch, accumulate_grad_batches, ...); None from older writers.
    resume_point: dict[str, Any] | None = None
    # Who recorded the phase: None for Lightning callbacks, "plain" for a plain PyTorch loop's hooks,
    # "transformers" for those fed by the Hugging Face Trainer's callback (workers.hf).
    instrumentation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sentinel:
        return _from_dict(cls, data, "sentinel")


@dataclass
class WorkerResult:
    """What one worker rank reports about one phase (written at start and at the end)."""

    phase: str
    rank: int
    world_size: int
    pid: int
    status: str  # "running", "ok", "mismatch", "spec_error" or "error"
    harness: str | None = None
    metadata_dir: str | None = None
    error: str | None = None
    traceback: str | None = None
    final_step: int | None = None
    wall_s: float | None = None
    tolerances: dict[str, list[float]] = field(default_factory=dict)
    metric_scopes: dict[str, str] = field(default_factory=dict)
    # time.time() when the worker process was created, when its imports were done and when
    # it saw its go-ahead (pre-warmed phases only).
    started_at: float | None = None
    ready_at: float | None = None
    go_ahead_at: float | None = None
    protocol_version: int = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerResult:
        return _from_dict(cls, data, "worker result")


class MetadataLayout:
    """Paths inside a harness's metadata directory (``root_dir / exp_name``)."""

    def __init__(self, metadata_dir: str | os.PathLike[str]) -> None:
        self.root = Path(metadata_dir)

    def metadata(self, rank: int, step: int) -> Path:
        return self.root / "metadata" / f"step{step}" / f"rank{rank}.json"

    def resume_check(self, label: str, rank: int) -> Path:
        return self.root / "resume_check" / label / f"rank{rank}.json"

    def trajectory(self, label: str, rank: int) -> Path:
        return self.root / "trajectory" / label / f"rank{rank}.json"

    def sentinel(self) -> Path:
        """Where the sentinel goes when no orchestrator run directory is set."""
        return self.root / "sentinel.json"


class RunLayout:
    """Paths inside one orchestrator run directory."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.root = Path(run_dir)

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def lock(self) -> Path:
        return self.root / "orchestrator.lock"

    @property
    def sentinel(self) -> Path:
        return self.root / "sentinel.json"

    def archived_sentinel(self, label: str) -> Path:
        return self.root / "sentinels" / f"{label}.json"

    @property
    def saving_marker(self) -> Path:
        return self.root / "saving.json"

    def phase_plan(self, label: str) -> Path:
        return self.root / "phases" / f"{label}.json"

    def stacks(self, label: str, rank: int) -> Path:
        return self.root / "stacks" / label / f"rank{rank}.txt"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def phase_log(self, phase: str) -> Path:
        return self.logs / f"{phase}.log"

    def torchrun_log_dir(self, phase: str) -> Path:
        return self.logs / phase

    def result(self, phase: str, rank: int) -> Path:
        return self.root / "results" / phase / f"rank{rank}.json"

    def results_dir(self, phase: str) -> Path:
        return self.root / "results" / phase

    def outlook(self, label: str) -> Path:
        """What a stopping phase's rank 0 saw at its train start: checkpoints in later epochs ahead."""
        return self.root / "outlook" / f"{label}.json"

    def go_ahead(self, label: str) -> Path:
        """The file a pre-warmed phase's workers wait for (written once the previous phase is dead)."""
        return self.root / "go_ahead" / f"{label}.json"

    def harness_root(self, mode: str) -> Path:
        """The harness ``root_dir``: stopping and resumed phases share one, the reference has its own."""
        return self.root / ("reference" if mode == PHASE_CONTINUOUS else "harness")


def read_phase_plan(layout: RunLayout, label: str) -> PhasePlan:
    """The plan the orchestrator wrote for ``label``, or the default plan of that label."""
    data = read_json(layout.phase_plan(label))
    return PhasePlan.from_dict(data) if data is not None else PhasePlan.default_for(label)


def current_phase_plan() -> PhasePlan | None:
    """In a worker: the plan of the phase being run, found through the environment."""
    run_dir, label = os.environ.get(ENV_RUN_DIR), os.environ.get(ENV_PHASE_LABEL)
    if not run_dir or not label:
        return None
    return read_phase_plan(RunLayout(run_dir), label)


def sentinel_path_for(metadata_dir: str | os.PathLike[str]) -> Path:
    """The sentinel location a worker should use: the run dir when set, else metadata_dir."""
    run_dir = os.environ.get(ENV_RUN_DIR)
    if run_dir:
        return RunLayout(run_dir).sentinel
    return MetadataLayout(metadata_dir).sentinel()


def saving_marker_path_for(metadata_dir: str | os.PathLike[str]) -> Path:
    """Where ``--kill-during-save`` announces a half-written checkpoint (see ``sentinel_path_for``)."""
    run_dir = os.environ.get(ENV_RUN_DIR)
    if run_dir:
        return RunLayout(run_dir).saving_marker
    return Path(metadata_dir) / "saving.json"


def wait_for_kill_s_from_env(default: float = 0.0) -> float:
    """Seconds stop workers wait to be killed after the sentinel (0 without an orchestrator)."""
    raw = os.environ.get(ENV_WAIT_FOR_KILL_S)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        return default


def read_results(layout: RunLayout, phase: str) -> dict[int, WorkerResult]:
    """All per-rank results of one phase, keyed by rank."""
    results: dict[int, WorkerResult] = {}
    directory = layout.results_dir(phase)
    if not directory.is_dir():
        return results
    for path in sorted(directory.glob("rank*.json")):
        data = read_json(path)
        if data is not None:
            result = WorkerResult.from_dict(data)
            results[result.rank] = result
    return results


def read_per_rank(paths: dict[int, Path]) -> dict[int, Any]:
    """Reads one JSON document per rank, skipping ranks whose file does not exist."""
    out: dict[int, Any] = {}
    for rank, path in paths.items():
        data = read_json(path)
        if data is not None:
            out[rank] = data
    return out


def ledger_path(metadata_dir: str | os.PathLike[str], phase: str, rank: int) -> Path:
    """Where ``rank`` of ``phase`` writes its data ledger inside a harness's metadata directory."""
    return Path(metadata_dir) / "ledger" / phase / f"rank{rank}.json"


def progress_dir(run_dir: str | os.PathLike[str], label: str) -> Path:
    """The directory of one phase's progress files (for the live view)."""
    return Path(run_dir) / "progress" / label


def progress_path(run_dir: str | os.PathLike[str], label: str, rank: int) -> Path:
    """The progress file of one rank of one phase."""
    return progress_dir(run_dir, label) / f"rank{rank}.json"


def phase_tag(run_id: str, label: str) -> str:
    """The ``ENV_RUN_ID`` value of one phase's processes: the run id, a dot, the label.

    Killing a phase matches its tag exactly, so a pre-warmed next phase (another tag) is
    left alone; the run's last sweep matches the bare run id and so every phase.
    """
    return f"{run_id}.{label}"


def tag_matches(value: str | None, tag: str) -> bool:
    """Whether a process's ``ENV_RUN_ID`` value belongs to ``tag`` (a run id or a phase tag)."""
    return value is not None and (value == tag or value.startswith(tag + "."))
