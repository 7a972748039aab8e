"""``python -m orchestrator self-test``: prove the checker catches every mutant.

Runs the correct default spec (the control, which must verify, in the default scenario)
and every mutant of the catalog (``harness_specs/mutants/*.py``), each a full orchestrator
run in its own subprocess: stop, kill, go, continuous reference, verdict (mutants with
``--single-stop``: one resume catches each). Every run has one worker per phase unless
``--nproc-per-node`` says otherwise; a mutant whose bug needs more declares ``MIN_RANKS``.
A mutant declares the metric that must catch it (``CAUGHT_BY = "..."``) and its bug class (``BUG_CLASS = "..."``). It
counts as caught only if the run exits 1 (resume mismatch) and its verdict names that
metric; a mutant that declares ``EXPECTED_CAUSE = "<cause id>"`` must also get that cause
as its first diagnosis (``orchestrator.judge.causes``). The line printed for it gives the
metric, rank, first divergent step and the diagnosed cause.

Prints ``caught X/Y``; exits 0 when every mutant is caught and the control verifies,
1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from orchestrator.run.reference import SharedReferenceError, reference_key, shared_reference

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MUTANTS_DIR = REPO / "harness_specs" / "mutants"
DEFAULT_CONTROL = REPO / "harness_specs" / "tiny_lightning.py"
EXIT_MISMATCH = 1
SINGLE_STOP = "--single-stop"
# One rank per phase: every mutant's bug but the per-rank ones (MIN_RANKS) shows with one,
# and each rank of a phase costs a whole import of torch, Lightning and the spec.
DEFAULT_NPROC = 1


class SelfTestUsageError(Exception):
    """Bad arguments or a malformed mutant file (exit 2)."""


@dataclass
class Mutant:
    """One mutant spec and what must catch it."""

    name: str
    path: Path
    caught_by: str
    bug_class: str
    # CAUGHT_AT = "resume": caught by the resume-point check alone, so the run skips the
    # continuous reference and the finding must be one of that check's.
    caught_at: str | None = None
    # SHARES_REFERENCE = "<spec path, relative to the mutant>": the spec whose continuous run
    # is provably this mutant's (the bug only acts on a resume), so its reference is reused.
    shares_reference: Path | None = None
    # EXPECTED_CAUSE = "<cause id>" (orchestrator.judge.causes): what the run's first
    # diagnosis must name; checked when declared.
    expected_cause: str | None = None
    # MIN_RANKS = N: the bug shows only with N ranks or more (per-rank state, a sampler's
    # split of the epoch); the mutant's run gets at least N workers per phase.
    min_ranks: int = 1

    def extra_args(self, references: dict[str, Path] | None = None, nproc: int = DEFAULT_NPROC) -> list[str]:
        """Orchestrator arguments this mutant's run adds to the self-test's.

        Every mutant resumes once (``--single-stop``): each is caught by a resume in epoch 0,
        and the default scenario's second stop would cost each run one more phase. The
        control runs the default scenario. ``references`` maps ``reference_key`` digests to
        finished runs whose continuous reference can be reused (``--reference-from``).
        """
        if self.caught_at == "resume":
            return [SINGLE_STOP, "--no-reference"]
        shared = None
        if self.shares_reference is not None and references:
            shared = references.get(reference_key(self.shares_reference, None, nproc))
        return [SINGLE_STOP, *(["--reference-from", str(shared)] if shared is not None else [])]


@dataclass
class MutantResult:
    """The outcome of one mutant's run."""

    mutant: Mutant
    returncode: int
    caught: bool
    finding: dict[str, Any] | None  # the first finding of the declared metric
    first_failure: str
    wall_s: float
    run_dir: Path
    metrics_named: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.mutant.name,
            "spec": str(self.mutant.path),
            "caught_by": self.mutant.caught_by,
            "bug_class": self.mutant.bug_class,
            "returncode": self.returncode,
            "caught": self.caught,
            "finding": self.finding,
            "metrics_named": self.metrics_named,
            "first_failure": self.first_failure,
            "wall_s": round(self.wall_s, 1),
            "run_dir": str(self.run_dir),
        }


def _module_constant(tree: ast.Module, name: str, kind: type = str) -> Any:
    for node in tree.body:
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Constant):
            continue
        value = node.value.value
        if any(isinstance(t, ast.Name) and t.id == name for t in node.targets) and type(value) is kind:
            return value
    return None


def read_mutant(path: Path) -> Mutant:
    """Reads a mutant's declarations without importing it (the orchestrator is torch-free)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as err:
        raise SelfTestUsageError(f"cannot read mutant {path}: {err}") from err
    caught_by = _module_constant(tree, "CAUGHT_BY")
    if not caught_by:
        raise SelfTestUsageError(f"mutant {path} declares no CAUGHT_BY = '<metric>'")
    caught_at = _module_constant(tree, "CAUGHT_AT")
    if caught_at not in (None, "resume"):
        raise SelfTestUsageError(f"mutant {path}: CAUGHT_AT must be 'resume' or left out, not {caught_at!r}")
    shares = _module_constant(tree, "SHARES_REFERENCE")
    base = (path.parent / shares).resolve() if shares else None
    if base is not None and not base.is_file():
        raise SelfTestUsageError(f"mutant {path}: SHARES_REFERENCE {shares!r} is not a file")
    expected_cause = _module_constant(tree, "EXPECTED_CAUSE")
    bug_class = _module_constant(tree, "BUG_CLASS") or ""
    declared = _module_constant(tree, "MIN_RANKS", int)
    min_ranks = 1 if declared is None else declared
    if min_ranks < 1:
        raise SelfTestUsageError(f"mutant {path}: MIN_RANKS must be at least 1, not {min_ranks}")
    return Mutant(
        path.stem, path, caught_by, bug_class, caught_at, base, expected_cause=expected_cause, min_ranks=min_ranks
    )


def discover(mutants_dir: Path, only: list[str] | None = None) -> list[Mutant]:
    """The mutants in ``mutants_dir`` (files not starting with ``_``), by name."""
    if not mutants_dir.is_dir():
        raise SelfTestUsageError(f"mutants directory not found: {mutants_dir}")
    mutants = [read_mutant(p) for p in sorted(mutants_dir.glob("*.py")) if not p.name.startswith("_")]
    if only:
        unknown = sorted(set(only) - {m.name for m in mutants})
        if unknown:
            raise SelfTestUsageError(f"unknown mutant(s): {', '.join(unknown)}")
        mutants = [m for m in mutants if m.name in only]
    if not mutants:
        raise SelfTestUsageError(f"no mutants in {mutants_dir}")
    return mutants


def run_spec(spec: Path, run_dir: Path, extra: list[str], timeout_s: float) -> tuple[int, dict[str, Any] | None, float]:
    """Runs one orchestrator subprocess; returns its exit code, report and wall time."""
    command = [sys.executable, "-m", "orchestrator", str(spec), "--run-dir", str(run_dir), "--quiet", *extra]
    started = time.monotonic()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.with_suffix(".out"), "wb") as log:
        try:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            code = -1  # the orchestrator's own --timeout should fire first
    report_path = run_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    return code, report, time.monotonic() - started


def judge_mutant(mutant: Mutant, code: int, report: dict[str, Any] | None) -> tuple[bool, dict[str, Any] | None, str]:
    """Whether the run caught the mutant by its declared metric; the finding; the reason line."""
    verdict = (report or {}).get("verdict") or {}
    findings = verdict.get("findings") or []
    mine = [
        f
        for f in findings
        if f.get("metric") == mutant.caught_by and (mutant.caught_at is None or f.get("where") == mutant.caught_at)
    ]
    failures = verdict.get("failures") or []
    first_failure = failures[0] if failures else (report or {}).get("message", "no report")
    diagnosis = (report or {}).get("diagnosis") or [{}]
    cause = diagnosis[0].get("cause_id")
    if mutant.expected_cause is not None and cause != mutant.expected_cause:
        first_failure = f"first diagnosis names cause {cause!r}, not {mutant.expected_cause!r}: {first_failure}"
        return False, None, first_failure
    finding = {**mine[0], "cause_id": cause} if mine else None
    return code == EXIT_MISMATCH and bool(mine), finding, first_failure


def run_self_test(
    mutants: list[Mutant],
    run_root: Path,
    extra: list[str],
    timeout_s: float,
    control: Path | None,
    out: TextIO,
    jobs: int = 1,
) -> tuple[int, list[MutantResult], bool | None]:
    """Runs the control and every mutant; prints a line each and ``caught X/Y``.

    With ``jobs`` > 1 that many mutants run at once (each a whole orchestrator with its
    own run directory and run id); lines are printed as runs finish, the summary keeps
    the catalog's order.
    """
    control_ok: bool | None = None
    references: dict[str, Path] = {}
    if control is not None:
        code, report, wall = run_spec(control, run_root / "control", extra, timeout_s)
        control_ok = code == 0
        references = _remember_reference(control, run_root / "control", extra, run_root)
        state = "verified" if control_ok else f"FAILED (exit {code}): {(report or {}).get('message', 'no report')}"
        out.write(f"control  {control.name}: {state} ({wall:.0f}s)\n")
        out.flush()

    def run_one(mutant: Mutant) -> MutantResult:
        run_dir = run_root / mutant.name
        nproc = max(_nproc(extra), mutant.min_ranks)
        mine = mutant.extra_args(references, nproc)
        code, report, wall = run_spec(mutant.path, run_dir, [*_with_nproc(extra, nproc), *mine], timeout_s)
        caught, finding, first_failure = judge_mutant(mutant, code, report)
        named = sorted({f["metric"] for f in ((report or {}).get("verdict") or {}).get("findings") or []})
        return MutantResult(mutant, code, caught, finding, first_failure, wall, run_dir, named)

    by_name: dict[str, MutantResult] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for result in as_completed_results(pool, run_one, mutants):
            by_name[result.mutant.name] = result
            out.write(_line(result) + "\n")
            out.flush()
    results = [by_name[m.name] for m in mutants]
    caught_count = sum(r.caught for r in results)
    out.write(f"caught {caught_count}/{len(results)}")
    if control_ok is not None:
        out.write("; control " + ("verified" if control_ok else "FAILED"))
    out.write(f" (runs in {run_root})\n")
    ok = caught_count == len(results) and control_ok is not False
    summary = {
        "caught": caught_count,
        "total": len(results),
        "control_ok": control_ok,
        "mutants": [r.to_dict() for r in results],
    }
    (run_root / "self_test.json").write_text(json.dumps(summary, indent=2))
    return (0 if ok else 1), results, control_ok


def _nproc(extra: list[str]) -> int:
    return int(extra[extra.index("--nproc-per-node") + 1]) if "--nproc-per-node" in extra else DEFAULT_NPROC


def _with_nproc(extra: list[str], nproc: int) -> list[str]:
    """``extra`` with ``--nproc-per-node nproc``."""
    out = list(extra)
    if "--nproc-per-node" in out:
        out[out.index("--nproc-per-node") + 1] = str(nproc)
    else:
        out += ["--nproc-per-node", str(nproc)]
    return out


def _remember_reference(spec: Path, run_dir: Path, extra: list[str], run_root: Path) -> dict[str, Path]:
    """Caches ``run_dir``'s finished continuous reference under its ``reference_key`` digest.

    The cache (``run_root/references/<key>.json``) maps what determines a reference (spec
    bytes, harness, ranks, the orchestrator's and workers' code) to the run holding it;
    a reference that did not finish is not cached, so its sharers run their own.
    """
    nproc = _nproc(extra)
    try:
        shared_reference(run_dir, nproc)
    except SharedReferenceError:
        return {}
    key = reference_key(spec, None, nproc)
    entry = run_root / "references" / f"{key}.json"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(json.dumps({"key": key, "spec": str(spec), "run_dir": str(run_dir)}))
    return {key: run_dir}


def as_completed_results(
    pool: ThreadPoolExecutor, fn: Callable[[Mutant], MutantResult], mutants: list[Mutant]
) -> Iterator[MutantResult]:
    """``fn(mutant)`` for every mutant on ``pool``, yielded as each finishes."""
    futures = [pool.submit(fn, mutant) for mutant in mutants]
    for future in as_completed(futures):
        yield future.result()


def _line(result: MutantResult) -> str:
    m = result.mutant
    if result.caught and result.finding is not None:
        f = result.finding
        step = f.get("step")
        where = f.get("where")
        return (
            f"caught   {m.name}: {m.caught_by} on rank {f.get('rank')}, first divergent step {step} ({where}), "
            f"cause {f.get('cause_id')} [{m.bug_class}] ({result.wall_s:.0f}s)"
        )
    named = ", ".join(result.metrics_named) or "nothing"
    return (
        f"MISSED   {m.name}: expected {m.caught_by}; exit {result.returncode}, named {named}: "
        f"{result.first_failure} ({result.wall_s:.0f}s)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The self-test's argument parser."""
    parser = argparse.ArgumentParser(prog="python -m orchestrator self-test", description=__doc__.splitlines()[0])
    parser.add_argument("--mutants-dir", type=Path, default=DEFAULT_MUTANTS_DIR, help="the mutant catalog")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants (file stems)")
    parser.add_argument("--no-control", action="store_true", help="skip the run of the correct default spec")
    parser.add_argument("--control", type=Path, default=DEFAULT_CONTROL, help="the correct spec that must verify")
    parser.add_argument("--run-dir", type=Path, help="where the runs go (default: ./stop_and_go_runs/self-test-<time>)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-phase timeout of each run (s)")
    parser.add_argument(
        "--nproc-per-node",
        type=int,
        default=DEFAULT_NPROC,
        help=f"workers per phase of the control and of each mutant (default: {DEFAULT_NPROC}; a mutant "
        "whose bug needs more ranks declares MIN_RANKS and gets them)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="mutant runs at once (default: 1)")
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Runs the self-test; returns 0 (all caught, control verified), 1 or 2 (usage)."""
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(argv)
        mutants = discover(args.mutants_dir, args.only)
        if not args.no_control and not args.control.is_file():
            raise SelfTestUsageError(f"control spec not found: {args.control}")
        if args.jobs < 1:
            raise SelfTestUsageError("--jobs must be at least 1")
        run_root = (args.run_dir or Path("stop_and_go_runs") / time.strftime("self-test-%Y%m%d-%H%M%S")).resolve()
        if (run_root / "self_test.json").exists():
            raise SelfTestUsageError(f"{run_root} already holds a self-test; choose another --run-dir")
        run_root.mkdir(parents=True, exist_ok=True)
    except SelfTestUsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    extra = ["--timeout", str(args.timeout), "--nproc-per-node", str(args.nproc_per_node)]
    control = None if args.no_control else args.control.resolve()
    code, _, _ = run_self_test(mutants, run_root, extra, args.timeout * 4, control, out, jobs=args.jobs)
    return code
