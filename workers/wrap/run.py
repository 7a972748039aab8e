"""What torchrun runs for a wrapped phase: the user's script, in this process, as one rank.

    python -m torch.distributed.run ... -m workers.wrap.run --phase LABEL --run-dir DIR \\
        --cwd PHASE_DIR --metadata-dir DIR [--checkpoint-every K] [--check-rng] -- SCRIPT ARGS...

It writes this rank's result file at start and end as ``workers.entry`` does, sets the
environment the callbacks factory reads, changes to the phase's working directory and
runs SCRIPT as ``__main__`` with ARGS as its ``sys.argv``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from orchestrator.protocol import ENV_PHASE_LABEL, PHASE_GO, RunLayout, read_phase_plan
from orchestrator.run.boot import die_with_parent
from orchestrator.wrap.command import CHECKPOINT, last_stop_checkpoint
from workers import hf
from workers.errors import NoCheckpointError, ResumeMismatchError, StopAndGoException
from workers.phase_result import dump_stacks_on_sigusr1, finish_result, record_error, start_result
from workers.plain import hooks as plain
from workers.prewarm import wait_for_go_ahead
from workers.wrap.config import ENV_WRAP, WrapConfig

# The result status of a stop that found no checkpoint to stop at (its own exit code).
STATUS_NO_CHECKPOINT = "no_checkpoint"


def _parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit("workers.wrap.run: expected -- SCRIPT [ARGS...]")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="workers.wrap.run", description=__doc__.splitlines()[0])
    parser.add_argument("--phase", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--cwd", required=True)
    parser.add_argument("--metadata-dir", required=True)
    parser.add_argument("--ckpt-dir", required=True)
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--check-rng", action="store_true")
    return parser.parse_args(argv[:split]), argv[split + 1 :]


def main(argv: list[str] | None = None) -> int:
    """Runs the script as one rank of one phase; returns 0 on success, 1 on any failure."""
    args, script_argv = _parse_args(sys.argv[1:] if argv is None else argv)
    # orchestrator.run.boot armed it before this module's imports; again for a start without it.
    die_with_parent()
    layout = RunLayout(args.run_dir)
    plan = read_phase_plan(layout, args.phase)
    result, path = start_result(
        layout,
        args.phase,
        harness=f"script {Path(script_argv[0]).name}",
        metadata_dir=str(Path(args.metadata_dir).resolve()),
    )
    stacks = dump_stacks_on_sigusr1(layout.stacks(args.phase, result.rank))
    config = WrapConfig(
        label=args.phase,
        mode=plan.mode,
        metadata_dir=result.metadata_dir or args.metadata_dir,
        ckpt_dir=args.ckpt_dir,
        checkpoint_every=args.checkpoint_every,
        check_rng=args.check_rng,
        stop_after_resume=plan.stop_after_resume,
        kill_at=plan.kill_at,
        later_epoch=plan.stop_in_later_epoch,
        kill_during_save=plan.kill_during_save,
    )
    os.environ[ENV_WRAP] = config.to_env()
    os.environ[ENV_PHASE_LABEL] = args.phase
    started = time.monotonic()
    exit_code = 0
    final_step: int | None = None
    try:
        _import_ahead(Path(script_argv[0]))  # the slow imports, done before a pre-warmed wait
        result.ready_at = time.time()
        result.go_ahead_at = wait_for_go_ahead()
        if plan.mode == PHASE_GO and any(CHECKPOINT in a for a in script_argv):
            checkpoint = last_stop_checkpoint(layout)
            script_argv = [a.replace(CHECKPOINT, checkpoint) for a in script_argv]
        Path(args.cwd).mkdir(parents=True, exist_ok=True)
        os.chdir(args.cwd)
        sys.argv = list(script_argv)
        sys.path.insert(0, str(Path(script_argv[0]).resolve().parent))
        # A plain PyTorch loop is recorded by these hooks; they stand down for a Lightning Trainer.
        instrumentation = plain.install(config, args.run_dir)
        hf.install()  # and a callback in every Hugging Face Trainer, feeding these hooks
        try:
            with _argparse_errors() as usage_errors:
                runpy.run_path(script_argv[0], run_name="__main__")
        except SystemExit as err:
            if err.code not in (None, 0):
                raise RuntimeError(f"the script exited with {err.code}{_explained(usage_errors)}") from err
        finally:
            if plain.active() is not None:
                instrumentation.recorder.flush()  # what it recorded, even when the script failed
        if plain.active() is not None:
            final_step = instrumentation.recorder.step
            instrumentation.checkpoints.finish()
        result.status = "ok"
    except StopAndGoException as err:
        # The stop's own end (not killed in time) or a missing resume checkpoint.
        result.status = "ok" if plan.stops and "not killed" in str(err) else "error"
        result.error = None if result.status == "ok" else str(err)
        exit_code = 0 if result.status == "ok" else 1
    except NoCheckpointError as err:
        result.status, result.error = STATUS_NO_CHECKPOINT, str(err)
        exit_code = 1
    except ResumeMismatchError as err:
        result.status, result.error = "mismatch", str(err)
        exit_code = 1
    except BaseException as err:  # noqa: BLE001 - every failure is reported, then re-exited
        record_error(result, err)
        exit_code = 1
    finish_result(result, path, started, final_step if final_step is not None else _lightning_final_step())
    stacks.close()
    return exit_code


@contextlib.contextmanager
def _argparse_errors() -> Iterator[list[str]]:
    """The usage errors the script's argument parser reports (argparse prints them, then exits 2)."""
    errors: list[str] = []
    original = argparse.ArgumentParser.error

    def error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
        errors.append(f"{parser.prog}: error: {message}")
        original(parser, message)

    argparse.ArgumentParser.error = error  # type: ignore[method-assign]
    try:
        yield errors
    finally:
        argparse.ArgumentParser.error = original  # type: ignore[method-assign]


def _explained(usage_errors: list[str]) -> str:
    # The verdict shows the parser's own words, not only "exited with 2" and a log to open.
    if not usage_errors:
        return ""
    hint = " (stop-and-go's own options go before `--`, the script's after it)"
    return f": {usage_errors[-1]}" + (hint if "unrecognized arguments" in usage_errors[-1] else "")


def _import_ahead(script: Path) -> None:
    """Imports what the script will: torch always, Lightning where the script mentions it.

    Only a head start (a pre-warmed phase waits with its imports done); a plain PyTorch
    script's ranks are not made to import Lightning.
    """
    import torch  # noqa: F401

    try:
        text = script.read_text(errors="replace")
    except OSError:
        return
    if "lightning" in text or "nemo" in text:
        import lightning.pytorch  # noqa: F401


def _lightning_final_step() -> int | None:
    if "workers.wrap.callbacks" not in sys.modules:  # no Lightning Trainer was built
        return None
    from workers.wrap.callbacks import FinalStepCallback

    return FinalStepCallback.final_step


if __name__ == "__main__":
    sys.exit(main())
