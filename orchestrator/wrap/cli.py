"""``stop-and-go run [options] -- SCRIPT [ARGS...]``: the options of a wrapped script's run.

Only the options of zero-code mode are parsed here; the rest (``--nproc-per-node``,
``--cycles``, ``--kill-at``, ``--run-dir``, the reports ...) go on to the spec run's
parser unchanged, with SCRIPT in the spec's place (``orchestrator.cli.main``).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from orchestrator.arguments import OneLineParser, UsageError
from orchestrator.wrap.command import PlaceholderError, ScriptCommand

DESCRIPTION = """\
Verify an unmodified training script: run SCRIPT ARGS under torchrun as stop, go and a
continuous reference, exactly as a spec run (sentinel, kill of the whole tree, fresh go
processes, the same verdict and reports). The project's Lightning callbacks-factory entry
point instruments every Trainer the script builds; outside such a run it adds nothing.

Placeholders in ARGS and --go-args: {phase_dir} (the phase's working directory: stop and go
share one, the reference has its own), {ckpt_dir} ({phase_dir}/checkpoints) and, in
--go-args only, {checkpoint} (the checkpoint the stop left)."""

EPILOG = """\
examples:
  stop-and-go run --go-args '--ckpt_path {checkpoint}' -- train_cli.py fit --trainer.max_steps 12
  stop-and-go run --nproc-per-node 1 -- train.py --resume-from-last

every option of `python -m orchestrator --help` applies too (not --calibrate, --harness,
--go-nproc-per-node; --kill-during-save only for a plain PyTorch script)."""

# Spec-run options that make no sense for a script, refused with a clear message.
_REFUSED = ("--calibrate", "--harness", "--go-nproc-per-node")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the zero-code options (everything else passes through)."""
    parser = OneLineParser(
        prog="stop-and-go run",
        usage="stop-and-go run [options] -- SCRIPT [ARGS...]",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--go-args",
        default="",
        metavar="'ARGS'",
        help="arguments appended to go's command line only, e.g. '--ckpt_path {checkpoint}' (default: none; "
        "a script whose fit gets no ckpt_path, or 'last' that finds none, is resumed from the stop's checkpoint)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="K",
        help="add a ModelCheckpoint(every_n_train_steps=K) to the script's Trainer, for scripts that checkpoint "
        "too rarely to be stopped mid-run",
    )
    parser.add_argument(
        "--check-rng",
        action="store_true",
        help="also compare the global RNG states (Lightning's checkpoints do not hold them, so a plain script "
        "never restores them; off by default, the losses and weights show whether it matters)",
    )
    return parser


def parse_run_args(argv: list[str]) -> tuple[list[str], ScriptCommand]:
    """Splits ``run``'s command line into the spec run's arguments and the script to run.

    Raises:
        UsageError: no ``-- SCRIPT``, a script that is not a file, or an option that does
            not apply to a script.
    """
    if "--" not in argv:
        if any(a in ("-h", "--help") for a in argv):
            build_parser().print_help()
            raise SystemExit(0)
        raise UsageError("stop-and-go run needs the script after --: stop-and-go run [options] -- SCRIPT [ARGS...]")
    split = argv.index("--")
    ours, passed = build_parser().parse_known_args(argv[:split])
    script_argv = argv[split + 1 :]
    if not script_argv:
        raise UsageError("no script after --")
    for option in passed:
        if option.split("=", 1)[0] in _REFUSED:
            raise UsageError(f"{option.split('=', 1)[0]} does not apply to stop-and-go run -- SCRIPT")
    script = Path(script_argv[0])
    if not script.is_file():
        raise UsageError(f"script not found: {script}")
    if ours.checkpoint_every is not None and ours.checkpoint_every < 1:
        raise UsageError("--checkpoint-every must be at least 1")
    try:
        go_args = tuple(shlex.split(ours.go_args))
    except ValueError as err:
        raise UsageError(f"--go-args: {err}") from err
    command = ScriptCommand(
        script=script.resolve(),
        args=tuple(script_argv[1:]),
        go_args=go_args,
        checkpoint_every=ours.checkpoint_every,
        check_rng=ours.check_rng,
    )
    try:
        command.check()
    except PlaceholderError as err:
        raise UsageError(str(err)) from err
    return [*passed, str(script)], command
