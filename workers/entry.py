"""The worker entry point that torchrun runs: one phase of one harness, one rank.

    python -m torch.distributed.run ... -m workers.entry --spec SPEC --phase LABEL --run-dir DIR

It loads the spec, instantiates the harness with ``root_dir`` inside the run directory,
runs the phase the orchestrator planned for LABEL (``RunLayout.phase_plan``; without a
plan the label is the mode), and writes this rank's result file (``RunLayout.result``)
at start (status ``running``, with the pid) and at the end.

The worker also arranges to die with its torchrun agent (PR_SET_PDEATHSIG) and to dump
the Python stacks of all its threads to ``RunLayout.stacks`` on SIGUSR1, which the
orchestrator sends before killing a hung phase.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from orchestrator.judge.metric_scopes import validate_scopes
from orchestrator.protocol import (
    ENV_PHASE_LABEL,
    PhasePlan,
    RunLayout,
    read_phase_plan,
    write_json_atomic,
)
from orchestrator.run.boot import die_with_parent
from workers.callbacks import ResumeMismatchError, StopPlanError
from workers.phase_result import dump_stacks_on_sigusr1, finish_result, record_error, start_result
from workers.prewarm import wait_for_go_ahead
from workers.spec_loader import SpecError, load_spec_module, pick_harness


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="workers.entry", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True)
    parser.add_argument("--harness", default=None)
    parser.add_argument("--phase", required=True, help="the phase label (stop, go1, go, continuous, ...)")
    parser.add_argument("--run-dir", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs one phase on this rank; returns 0 on success and 1 on any failure."""
    args = _parse_args(argv)
    # orchestrator.run.boot armed it before this module's imports; again for a start without it.
    die_with_parent()
    layout = RunLayout(args.run_dir)
    os.environ[ENV_PHASE_LABEL] = args.phase
    result, path = start_result(layout, args.phase, ready_at=time.time())  # imported at module level
    stacks = dump_stacks_on_sigusr1(layout.stacks(args.phase, result.rank))
    started = time.monotonic()
    exit_code = 0
    harness = None
    try:
        plan = read_phase_plan(layout, args.phase)
        harness_cls = pick_harness(load_spec_module(args.spec), args.harness)
        # A pre-warmed phase waits here, everything imported, for the previous one to be dead.
        result.go_ahead_at = wait_for_go_ahead()
        harness = harness_cls(root_dir=layout.harness_root(plan.mode))
        harness.plan = plan
        result.harness = harness_cls.__name__
        result.metadata_dir = str(harness.metadata_dir.resolve())
        result.tolerances = {k: list(v) for k, v in harness.metric_tolerances.items()}
        result.metric_scopes = dict(harness.metric_scopes)
        try:
            validate_scopes(harness.metric_scopes)
        except ValueError as err:
            raise SpecError(f"{args.spec}: {err}") from err
        _check_world_size_change(harness, plan, result.world_size, args.spec)
        write_json_atomic(path, result.to_dict())
        {"stop": harness.stop, "go": harness.go, "continuous": harness.continuous}[plan.mode]()
        result.status = "ok"
    except (SpecError, StopPlanError) as err:
        result.status, result.error = "spec_error", str(err)
        exit_code = 1
    except ResumeMismatchError as err:
        result.status, result.error = "mismatch", str(err)
        exit_code = 1
    except BaseException as err:  # noqa: BLE001 - every failure is reported, then re-exited
        record_error(result, err)
        exit_code = 1
    finish_result(result, path, started, getattr(harness, "final_step", None))
    stacks.close()
    return exit_code


def _check_world_size_change(harness: Any, plan: PhasePlan, world_size: int, spec: str) -> None:
    """Refuses a resume with another world size unless the spec declares it supports one."""
    saved = plan.checkpoint_world_size
    if saved is None or saved == world_size or getattr(harness, "supports_world_size_change", False):
        return
    raise SpecError(
        f"{spec}: {type(harness).__name__} cannot resume a checkpoint of {saved} ranks with {world_size}: "
        "the spec does not declare supports_world_size_change = True"
    )


if __name__ == "__main__":
    sys.exit(main())
