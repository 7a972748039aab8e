"""Which entries of a suite can share one continuous reference (issue 15).

A suite runs each spec under several scenarios (another kill signal, a kill step, cycles,
another go world size). Those change stop and go, never the continuous run, which depends
only on the spec, the harness, the ranks and the code (``reference_key``). So of the entries
whose continuous run is provably the same, the first (the *leader*) runs the reference and
the others (its *followers*) start once it has finished and reuse it with
``--reference-from``. A follower whose leader left no finished reference (it failed before
its reference ran, or ran none) runs its own: sharing never turns a verdict into an error.

What an entry's orchestrator options mean is read with the orchestrator's own parser: the
only parsed values that change a continuous run are the harness, ``--nproc-per-node`` and
``--nnodes``, which go into the key. An entry that asks for no reference, brings its own
(``--reference-from``), calibrates, or is a training script (``stop-and-go run``) is never
grouped. A new option that changes the continuous run must join the key here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.arguments import UsageError
from orchestrator.run.arguments import build_parser
from orchestrator.run.reference import SharedReferenceError, reference_key, shared_reference
from orchestrator.suite.config import Entry


def _options(entry: Entry) -> argparse.Namespace | None:
    """The entry's orchestrator options as the orchestrator reads them (None: a script or unparsable)."""
    if entry.script_args is not None:
        return None
    try:
        return build_parser().parse_args([str(entry.spec), *entry.options])
    except UsageError:
        return None  # the entry's own run will say what is wrong with its options


def sharing_key(entry: Entry) -> str | None:
    """The ``reference_key`` of the entry's continuous run, or None if it shares nothing."""
    args = _options(entry)
    if args is None or not args.reference or args.reference_from is not None or args.calibrate:
        return None
    return reference_key(entry.spec, args.harness, args.nproc_per_node, args.nnodes)


def leaders(entries: list[Entry]) -> dict[str, str]:
    """Maps each follower's name to its leader's: the first entry, in suite order, with its key."""
    first: dict[str, str] = {}
    plan: dict[str, str] = {}
    for entry in entries:
        key = sharing_key(entry)
        if key is None:
            continue
        if key in first:
            plan[entry.name] = first[key]
        else:
            first[key] = entry.name
    return plan


def reference_args(leader_run_dir: Path, entry: Entry) -> list[str]:
    """``--reference-from`` the leader's run if it left a finished reference of the entry's size, else none."""
    args = _options(entry)
    assert args is not None, "only an entry with a sharing key follows a leader"
    try:
        shared_reference(leader_run_dir, args.nproc_per_node * args.nnodes)
    except SharedReferenceError:
        return []
    return ["--reference-from", str(leader_run_dir)]
