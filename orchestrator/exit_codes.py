"""The orchestrator's exit codes: one per way a run can end."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of ``python -m orchestrator``."""

    VERIFIED = 0
    MISMATCH = 1
    USAGE = 2
    STOP_FAILED = 3
    GO_FAILED = 4
    TIMEOUT = 5
    REFERENCE_FAILED = 6
    RUN_DIR_UNUSABLE = 7
    GPU_NOT_RELEASED = 8
    SPEC_NONDETERMINISTIC = 9
    NO_CHECKPOINT = 10
    NODE_LOST = 11
    INTERNAL_ERROR = 70
    INTERRUPTED = 130


DESCRIPTIONS: dict[ExitCode, str] = {
    ExitCode.VERIFIED: "resume verified: every metric matched on every rank",
    ExitCode.MISMATCH: "resume mismatch: the metrics that differed are named with both values",
    ExitCode.USAGE: "usage error or bad spec (missing file, syntax error, no or ambiguous harness class)",
    ExitCode.STOP_FAILED: "stop phase failed: workers died before writing the sentinel",
    ExitCode.GO_FAILED: "go phase failed: the resumed workers crashed or did not report",
    ExitCode.TIMEOUT: "timeout or hang: no sentinel, or a phase did not finish within --timeout",
    ExitCode.REFERENCE_FAILED: "the continuous reference run failed",
    ExitCode.RUN_DIR_UNUSABLE: "the run dir cannot be written (unwritable, not a directory, or disk full)",
    ExitCode.GPU_NOT_RELEASED: "a killed run still held GPU memory when the next phase was due",
    ExitCode.SPEC_NONDETERMINISTIC: "spec not deterministic: stop already differed from the reference before "
    "its stop, so no resume can be judged (the first differing metric is named)",
    ExitCode.NO_CHECKPOINT: "stop-and-go run: the script's Trainer saved no checkpoint to stop at before training "
    "ended (add --checkpoint-every K)",
    ExitCode.NODE_LOST: "sbatch: a node of the Slurm job was lost mid-run (NODE_FAIL), so the run could not be "
    "judged; the failed nodes are named",
    ExitCode.INTERNAL_ERROR: "internal error of the orchestrator (a bug: please report it)",
    ExitCode.INTERRUPTED: "interrupted by SIGINT or SIGTERM; workers were killed first",
}


def exit_code_table() -> str:
    """The exit codes as aligned text lines, for ``--help`` and the README."""
    return "\n".join(f"  {int(code):>3}  {DESCRIPTIONS[code]}" for code in ExitCode)
