"""The torchrun worker command line of each phase of a wrapped script, placeholders filled in.

Placeholders, in ARGS and ``--go-args``: ``{checkpoint}`` (the checkpoint the last stop
left; only in go's arguments, filled in by the worker, ``workers.wrap.run``),
``{phase_dir}`` (the phase's working directory: stop and go share one, the reference has
its own) and ``{ckpt_dir}`` (``{phase_dir}/checkpoints``).
Only these names are replaced, so braces elsewhere (JSON, Hydra) pass through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.protocol import PHASE_GO, RunLayout, read_json, read_phase_plan

WRAP_WORKER_MODULE = "workers.wrap.run"
CHECKPOINT = "{checkpoint}"


class PlaceholderError(ValueError):
    """A placeholder that cannot be filled in where it is used."""


def phase_dir(layout: RunLayout, mode: str) -> Path:
    """The working directory of a phase: the reference never sees stop's or go's files."""
    return layout.harness_root(mode) / "workdir"


def metadata_dir(layout: RunLayout, mode: str) -> Path:
    """Where the phase's callbacks write metadata, outside the script's working directory."""
    return layout.harness_root(mode) / "stop_and_go"


def stop_records(layout: RunLayout) -> list[dict[str, Any]]:
    """The stops' archived sentinels (and ``--kill-during-save``'s save markers) of this run."""
    found = [read_json(p) for p in sorted((layout.root / "sentinels").glob("*.json"))]
    return [s for s in found if s]


def last_stop(layout: RunLayout) -> dict[str, Any] | None:
    """The newest stop record that names a checkpoint to resume from (go's resume point), if any."""
    named = [s for s in stop_records(layout) if s.get("checkpoint_path")]
    return max(named, key=lambda s: float(s.get("written_at", 0))) if named else None


def last_stop_checkpoint(layout: RunLayout) -> str:
    """The checkpoint named by the newest sentinel of this run (the resume point of go)."""
    stop = last_stop(layout)
    if stop is None:
        raise PlaceholderError("{checkpoint} is used, but no stop has left a checkpoint yet")
    return str(stop["checkpoint_path"])


def fill(arg: str, values: dict[str, str]) -> str:
    """``arg`` with each known placeholder replaced."""
    for name, value in values.items():
        arg = arg.replace("{" + name + "}", value)
    return arg


@dataclass(frozen=True)
class ScriptCommand:
    """The user's script, its arguments and what ``stop-and-go run`` adds to them."""

    script: Path
    args: tuple[str, ...] = ()
    go_args: tuple[str, ...] = ()
    checkpoint_every: int | None = None
    check_rng: bool = False

    def check(self) -> None:
        """Raises ``PlaceholderError`` for ``{checkpoint}`` outside ``--go-args``."""
        if any(CHECKPOINT in a for a in self.args):
            raise PlaceholderError("{checkpoint} belongs in --go-args: only go resumes from a checkpoint")

    def worker_argv(self, phase: str, layout: RunLayout) -> list[str]:
        """What torchrun runs for ``phase`` (after its own options), placeholders filled in."""
        plan = read_phase_plan(layout, phase)
        workdir = phase_dir(layout, plan.mode)
        values = {"phase_dir": str(workdir), "ckpt_dir": str(workdir / "checkpoints")}
        args = list(self.args)
        if plan.mode == PHASE_GO:
            # {checkpoint} stays: the worker fills it in once its go-ahead has come (a
            # pre-warmed go starts before the stop has left its checkpoint).
            args += self.go_args
        command = [
            "-m",
            WRAP_WORKER_MODULE,
            "--phase",
            phase,
            "--run-dir",
            str(layout.root),
            "--cwd",
            str(workdir),
            "--metadata-dir",
            str(metadata_dir(layout, plan.mode)),
            "--ckpt-dir",
            values["ckpt_dir"],
        ]
        if self.checkpoint_every:
            command += ["--checkpoint-every", str(self.checkpoint_every)]
        if self.check_rng:
            command.append("--check-rng")
        return [*command, "--", str(self.script), *(fill(a, values) for a in args)]
