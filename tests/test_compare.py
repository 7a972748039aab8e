"""Value and trajectory comparison."""

from __future__ import annotations

import math

from orchestrator.judge.compare import check_metrics, compare_trajectories, values_match


def test_values_match_types_and_tolerances() -> None:
    assert values_match(2, 2)
    assert not values_match(2, 3)
    assert not values_match(True, 1)
    assert values_match(0.1 + 0.2, 0.3)
    assert not values_match(0.0375, 0.025)
    assert values_match(1.0, 1.05, rtol=0.1)
    assert values_match(math.nan, math.nan)
    assert not values_match(math.nan, 1.0)
    assert values_match("abc", "abc") and not values_match("abc", "abd")
    assert values_match([1, 2.0], [1, 2.0]) and not values_match([1, 2], [1, 2, 3])
    assert values_match({"a": 1}, {"a": 1}) and not values_match({"a": 1}, {"b": 1})


def test_check_metrics_flags_missing_and_different() -> None:
    checks = check_metrics({"lr": 0.1, "step": 2, "gone": 1}, {"lr": 0.2, "step": 2}, rank=1)
    by_name = {c.metric: c for c in checks}
    assert not by_name["lr"].ok and by_name["lr"].rank == 1
    assert by_name["step"].ok
    assert not by_name["gone"].ok and by_name["gone"].actual == "<missing>"


def test_per_metric_tolerance_override() -> None:
    checks = check_metrics({"loss": 1.0}, {"loss": 1.01}, rank=0, tolerances={"loss": [0.05, 0.0]})
    assert checks[0].ok


def _traj(values: list[float], start: int = 1) -> list[dict]:
    return [{"step": start + i, "metrics": {"lr": v, "step": start + i}} for i, v in enumerate(values)]


def test_trajectory_first_divergence_per_rank_and_metric() -> None:
    reference = {0: _traj([1.0, 2.0, 3.0, 4.0]), 1: _traj([1.0, 2.0, 3.0, 4.0])}
    candidate = {0: _traj([1.0, 2.0, 3.0, 4.0]), 1: _traj([1.0, 2.5, 3.5, 4.0])}
    result = compare_trajectories(reference, candidate)
    assert not result.ok
    assert len(result.divergences) == 1
    first = result.first_divergence()
    assert (first.rank, first.step, first.metric, first.expected, first.actual) == (1, 2, "lr", 2.0, 2.5)
    assert result.compared_values == 16


def test_trajectory_missing_steps_fail() -> None:
    reference = {0: _traj([1.0, 2.0, 3.0])}
    candidate = {0: _traj([1.0])}
    result = compare_trajectories(reference, candidate)
    assert not result.ok
    assert result.missing_steps == {0: [2, 3]}


def test_trajectory_identical_is_ok() -> None:
    reference = {0: _traj([1.0, 2.0], start=3)}
    assert compare_trajectories(reference, reference).ok
