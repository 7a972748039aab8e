"""The doctor's command line: ``python -m workers.doctor SPEC.py [--harness NAME] [--strict]``."""

from __future__ import annotations

import argparse
import sys
import traceback

from workers.doctor import diagnose
from workers.spec_loader import SpecError, load_spec_module, pick_harness

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_SPEC = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The doctor's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator doctor",
        description="List what in a spec's setup will not resume, and the fix, without training.",
        epilog="exit codes: 0 no findings (or findings without --strict), 1 findings with --strict, 2 bad spec",
    )
    parser.add_argument("spec", help="a Python file defining a StopAndGoHarness subclass")
    parser.add_argument("--harness", metavar="NAME", help="the harness class when the spec defines several")
    parser.add_argument("--strict", action="store_true", help="exit 1 when there are findings")
    parser.add_argument(
        "--stop-at", type=int, metavar="STEP", help="the step the run stops at (default: the first checkpointed "
        "validation, where the stop phase stops; pass your --kill-at)"
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the doctor on one spec; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        harness_cls = pick_harness(load_spec_module(args.spec), args.harness)
        findings = diagnose(harness_cls, args.stop_at)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_SPEC
    except Exception as err:  # noqa: BLE001 - the spec's own code failed while being built
        traceback.print_exc()
        print(f"error: cannot build the spec's setup: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_BAD_SPEC
    name = f"{args.spec} ({harness_cls.__name__})"
    if not findings:
        print(f"doctor: {name}: nothing found that would not resume")
        return EXIT_OK
    print(f"doctor: {name}: {len(findings)} finding(s), what will not resume and the fix:")
    for finding in findings:
        print("  " + finding.line().replace("\n", "\n  "))
    return EXIT_FINDINGS if args.strict else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
