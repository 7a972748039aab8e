"""``--calibrate``: measure the spec's noise floor and derive per-metric tolerances from it.

The continuous run is launched twice, in fresh torchrun processes each
(``RUN_DIR/calibration/run1`` and ``run2``), and the two trajectories are compared value
by value on every rank and step. For each metric this gives the noise floor: how far two
runs of the same code and seed drift apart by themselves. The tolerances follow from it:

- integers, booleans, strings and digests must be identical; if one differs between the
  two runs, the spec is not deterministic for it and no tolerance can help (exit 1);
- a float metric that reproduced bit for bit keeps the defaults
  (``orchestrator.judge.compare.DEFAULT_RTOL`` / ``DEFAULT_ATOL``);
- a float metric that drifted gets ``rtol = SAFETY * max relative drift`` and
  ``atol = SAFETY * max absolute drift`` (never below the defaults).

The result goes to ``RUN_DIR/calibration.json`` and is printed as a ``metric_tolerances``
snippet to pin in the spec (or pass back with ``--tolerances RUN_DIR/calibration.json``).
"""

from __future__ import annotations

import math
import signal
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from orchestrator.judge.compare import DEFAULT_ATOL, DEFAULT_RTOL
from orchestrator.judge.verdict import read_trajectories
from orchestrator.protocol import PHASE_CONTINUOUS, RunLayout, read_results, write_json_atomic
from orchestrator.run.events import RunEvents
from orchestrator.run.launcher import LocalTorchrunLauncher, WorkerGroup
from orchestrator.run.process_tree import kill_run

SAFETY = 10.0
"""How many times the measured drift a tolerance allows."""

CALIBRATION_FILE = "calibration.json"
POLL_INTERVAL_S = 0.05


class CalibrationFailed(Exception):
    """A calibration run failed or timed out; the message says which and where its log is."""


@dataclass
class MetricNoise:
    """The drift of one metric between the two continuous runs, over all ranks and steps."""

    metric: str
    kind: str  # "float" (tolerance applies) or "exact" (ints, strings, digests)
    compared: int = 0
    differing: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    first_difference: dict[str, Any] | None = None

    @property
    def deterministic(self) -> bool:
        return self.kind == "float" or self.differing == 0

    def tolerance(self) -> tuple[float, float] | None:
        """The (rtol, atol) this noise floor calls for; None for exact metrics."""
        if self.kind != "float":
            return None
        return max(DEFAULT_RTOL, SAFETY * self.max_rel), max(DEFAULT_ATOL, SAFETY * self.max_abs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["deterministic"] = self.deterministic
        data["tolerance"] = self.tolerance()
        return data


@dataclass
class Calibration:
    """The noise floor of every metric and the tolerances derived from it."""

    noise: dict[str, MetricNoise] = field(default_factory=dict)
    steps: int = 0
    ranks: int = 0

    @property
    def tolerances(self) -> dict[str, list[float]]:
        """Per-metric ``[rtol, atol]`` for every float metric."""
        out = {}
        for name, noise in sorted(self.noise.items()):
            tolerance = noise.tolerance()
            if tolerance is not None:
                out[name] = list(tolerance)
        return out

    @property
    def nondeterministic(self) -> list[MetricNoise]:
        return [n for n in self.noise.values() if not n.deterministic]

    def to_dict(self) -> dict[str, Any]:
        return {
            "safety": SAFETY,
            "defaults": [DEFAULT_RTOL, DEFAULT_ATOL],
            "steps": self.steps,
            "ranks": self.ranks,
            "tolerances": self.tolerances,
            "nondeterministic": [n.metric for n in self.nondeterministic],
            "noise": {name: n.to_dict() for name, n in sorted(self.noise.items())},
        }


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key in sorted(value):
            yield from _leaves(value[key], f"{path}.{key}")
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def _is_float(value: Any) -> bool:
    return isinstance(value, float) and not isinstance(value, bool)


def measure_noise(
    first: Mapping[int, Sequence[Mapping[str, Any]]], second: Mapping[int, Sequence[Mapping[str, Any]]]
) -> Calibration:
    """Compares two trajectories of the same continuous run, value by value."""
    calibration = Calibration(ranks=len(first))
    steps: set[int] = set()
    for rank in sorted(first):
        other = {int(e["step"]): e.get("metrics", {}) for e in second.get(rank, [])}
        for entry in first[rank]:
            step = int(entry["step"])
            steps.add(step)
            for metric, a_value in entry.get("metrics", {}).items():
                b_value = other.get(step, {}).get(metric, "<missing>")
                _accumulate(calibration, metric, rank, step, a_value, b_value)
    calibration.steps = len(steps)
    return calibration


def _accumulate(calibration: Calibration, metric: str, rank: int, step: int, a_value: Any, b_value: Any) -> None:
    a_leaves, b_leaves = dict(_leaves(a_value)), dict(_leaves(b_value))
    kind = "float" if any(_is_float(v) for v in a_leaves.values()) else "exact"
    noise = calibration.noise.setdefault(metric, MetricNoise(metric, kind))
    if kind == "float":
        noise.kind = "float"
    noise.compared += 1
    differs = a_leaves.keys() != b_leaves.keys()
    for path, a in a_leaves.items():
        b = b_leaves.get(path)
        if _is_float(a) and isinstance(b, (int, float)) and not isinstance(b, bool):
            if math.isnan(a) and math.isnan(b):
                continue
            diff = abs(a - b)
            if diff > 0 or math.isnan(diff):
                differs = True
                noise.max_abs = max(noise.max_abs, diff)
                noise.max_rel = max(noise.max_rel, diff / max(abs(a), abs(b)))
        elif a != b:
            differs = True
    if differs:
        noise.differing += 1
        if noise.first_difference is None:
            noise.first_difference = {"rank": rank, "step": step, "run1": a_value, "run2": b_value}


def _run_continuous(
    spec: Path, layout: RunLayout, harness: str | None, nproc: int, timeout_s: float, events: RunEvents
) -> str:
    """One continuous run in fresh torchrun workers; returns its metadata directory."""
    run_id = uuid.uuid4().hex
    proc = LocalTorchrunLauncher(WorkerGroup(spec, harness, nproc)).launch(
        PHASE_CONTINUOUS, layout, run_id, timeout_s, events
    )
    try:
        while proc.poll() is None:
            if time.monotonic() - proc.started > timeout_s:
                raise CalibrationFailed(f"calibration run {layout.root.name} did not finish within {timeout_s:g}s")
            time.sleep(POLL_INTERVAL_S)
        code = proc.reap()
    finally:
        proc.kill(signal.SIGKILL, 0.0)
        kill_run(None, run_id)
    results = read_results(layout, PHASE_CONTINUOUS)
    failed = [r for r in results.values() if r.status != "ok"]
    if code != 0 or not results or failed:
        reason = f"rank {failed[0].rank}: {failed[0].error}" if failed else f"torchrun exited with {code}"
        raise CalibrationFailed(f"calibration run {layout.root.name} failed: {reason} (log: {proc.log_path})")
    metadata_dir = results[min(results)].metadata_dir
    assert metadata_dir is not None
    return metadata_dir


def calibrate(
    spec: Path,
    run_dir: Path,
    harness: str | None,
    nproc_per_node: int,
    timeout_s: float,
    events: RunEvents,
) -> Calibration:
    """Runs the continuous run twice, measures the noise and writes ``calibration.json``."""
    trajectories = []
    for n in (1, 2):
        layout = RunLayout(run_dir / "calibration" / f"run{n}")
        events.event("calibrate", PHASE_CONTINUOUS, f"calibration: continuous run {n} of 2")
        metadata_dir = _run_continuous(spec, layout, harness, nproc_per_node, timeout_s, events)
        trajectories.append(read_trajectories(metadata_dir, PHASE_CONTINUOUS, nproc_per_node * 1))
    calibration = measure_noise(trajectories[0], trajectories[1])
    write_json_atomic(run_dir / CALIBRATION_FILE, calibration.to_dict())
    return calibration


def summary(calibration: Calibration, run_dir: Path) -> str:
    """The noise table and the snippet to pin, as printed by ``--calibrate``."""
    lines = [
        f"calibration: 2 continuous runs, {calibration.steps} steps x {calibration.ranks} ranks",
        "",
        f"{'metric':<24}  {'kind':<5}  {'differing':>9}  {'max abs drift':>13}  {'max rel drift':>13}  tolerance",
    ]
    for name, noise in sorted(calibration.noise.items()):
        tolerance = noise.tolerance()
        shown = "exact" if tolerance is None else f"rtol={tolerance[0]:.3g} atol={tolerance[1]:.3g}"
        if not noise.deterministic:
            shown = "NOT DETERMINISTIC"
        lines.append(
            f"{name:<24}  {noise.kind:<5}  {noise.differing:>4}/{noise.compared:<4}  "
            f"{noise.max_abs:>13.3g}  {noise.max_rel:>13.3g}  {shown}"
        )
    lines += ["", f"written to {run_dir / CALIBRATION_FILE}; to pin them, in the harness's __init__:", ""]
    lines.append("    self.metric_tolerances.update({")
    for name, (rtol, atol) in calibration.tolerances.items():
        lines.append(f"        {name!r}: ({rtol!r}, {atol!r}),")
    lines.append("    })")
    for noise in calibration.nondeterministic:
        first = noise.first_difference or {}
        lines.append(
            f"not deterministic: {noise.metric} differs between two identical runs "
            f"(rank {first.get('rank')}, step {first.get('step')}: {first.get('run1')!r} vs {first.get('run2')!r})"
        )
    return "\n".join(lines) + "\n"


def load_tolerances(path: Path) -> dict[str, list[float]]:
    """Tolerances from a ``calibration.json`` or a plain ``{"metric": [rtol, atol]}`` file.

    Raises:
        ValueError: on anything else (the message is one line).
    """
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read tolerances from {path}: {err}") from err
    table = data.get("tolerances", data) if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise ValueError(f"{path} holds no tolerance table")
    out = {}
    for metric, pair in table.items():
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(v, (int, float)) and v >= 0 for v in pair)
        ):
            raise ValueError(f"{path}: tolerance of {metric!r} must be [rtol, atol] with non-negative numbers")
        out[str(metric)] = [float(pair[0]), float(pair[1])]
    return out


def run_calibration(
    spec: Path,
    run_dir: Path,
    harness: str | None,
    nproc_per_node: int,
    timeout_s: float,
    events: RunEvents,
    out: TextIO,
) -> int:
    """The ``--calibrate`` command: 0 when every exact metric reproduced, 1 when one did not."""
    calibration = calibrate(spec, run_dir, harness, nproc_per_node, timeout_s, events)
    out.write(summary(calibration, run_dir))
    return 1 if calibration.nondeterministic else 0
