"""The sbatch wrapper across the two nodes of a real Slurm cluster (issue 32).

``bash scripts/start_slurm.sh`` (as root) starts slurmctld here and two ``slurmd``, each
in its own network namespace with its own address and hostname (``node1``, ``node2``):
a rendezvous on ``localhost`` or a kill that reaches one node only fails here as on a
real cluster. ``tests/slurm_nodes.py`` watches each run: per phase, on which nodes its
processes ran, and what of it was left on each node (processes, the step's cgroups) when
the next phase was launched. Where the cluster is not up, these tests skip and say so.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.exit_codes import ExitCode
from tests import background
from tests.conftest import DEFAULT_SPEC, REPO, background_run, live_processes_of_run, one_line
from tests.slurm_nodes import NODES, cgroup_pids, processes_by_node, two_nodes_reason

# The jobs take both nodes each, so they queue behind each other and the other Slurm tests'
# jobs: the fixture may wait for the queue longer than the suite's default timeout.
pytestmark = pytest.mark.timeout(1200)
needs_two_nodes = pytest.mark.skipif(two_nodes_reason() is not None, reason=str(two_nodes_reason()))
PLAIN_SCRIPT = REPO / "tests" / "scripts" / "plain_train.py"

# The wrappers the tests below judge ("{run_dir}": each job's own run dir). Each takes
# both nodes (one CPU each), so Slurm runs them one after the other.
JOBS: dict[str, tuple[str, ...]] = {
    # The default spec, each phase one srun step over both nodes.
    "default": ("sbatch", str(DEFAULT_SPEC), "--nodes", "2", "--nproc-per-node", "1", "--run-dir", "{run_dir}",
                "--", "--single-stop"),
    # Zero code: an unmodified Lightning script over both nodes (the default job above runs a
    # two-node reference already).
    "script": ("sbatch", "--nodes", "2", "--nproc-per-node", "1", "--run-dir", "{run_dir}", "--quiet",
               "run", "--quiet", "--no-reference", "--", str(PLAIN_SCRIPT), "--max-steps", "6", "--every", "3"),
    # Go as a new job, kept off the stop job's node.
    "go_elsewhere": ("sbatch", str(DEFAULT_SPEC), "--run-dir", "{run_dir}", "--go-as-new-job",
                     "--go-on-other-nodes", "--", "--no-reference", "--single-stop", "--quiet"),
    # node2 lost once the stop step runs there (the watcher kills its slurmd, its slurmstepd and
    # the step's processes there, then brings it back with scripts/start_slurm.sh). The job
    # holds both nodes, so no other job is on node2 then.
    "node_lost": ("sbatch", str(DEFAULT_SPEC), "--nodes", "2", "--nproc-per-node", "1", "--run-dir", "{run_dir}",
                  "--", "--no-reference", "--single-stop", "--quiet"),
}  # fmt: skip
LOSE = {"node_lost": "node2"}


def _watched(args: tuple[str, ...], lose: str | None) -> Callable[[Path], list[str]]:
    def command(out: Path) -> list[str]:
        wrapper = [sys.executable, "-m", "orchestrator", *(a.format(run_dir=out / "run") for a in args)]
        watcher = [sys.executable, "-m", "tests.slurm_nodes", str(out / "watch.json"), str(out / "run")]
        return [*watcher, *(["--lose-node", lose] if lose else []), "--", *wrapper]

    return command


if two_nodes_reason() is None:
    for _name, _args in JOBS.items():
        background.register(
            f"two_node_{_name}", _watched(_args, LOSE.get(_name)), timeout=1200, idle=True, fixture="two_node_jobs"
        )


@dataclass
class Watched:
    """A finished wrapper, its run dir and what the watcher saw on the nodes."""

    run_dir: Path
    proc: subprocess.CompletedProcess[str]
    watch: dict

    @property
    def report(self) -> dict:
        return json.loads((self.run_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def two_node_jobs(request: pytest.FixtureRequest) -> dict[str, Watched]:
    done = {}
    for name in JOBS:
        run = background_run(request, f"two_node_{name}")
        proc = run.wait()
        watch_file = run.out_dir / "watch.json"
        watch = json.loads(watch_file.read_text()) if watch_file.exists() else {}
        done[name] = Watched(run.out_dir / "run", proc, watch)
    return done


def assert_nothing_left_on_any_node(job: Watched) -> None:
    """At each phase's successor's launch and at the end: no process on either node, none in a step cgroup."""
    run_id = job.watch["run_id"]
    for phase, left in job.watch["left_at_next_launch"].items():
        assert left["processes"] == {}, f"{phase} left processes: {left['processes']}"
        assert all(pids == [] for pids in left["cgroup_pids"].values()), f"{phase}'s cgroups: {left['cgroup_pids']}"
    assert job.watch["left_at_end"]["processes"] == {}
    assert all(pids == [] for pids in job.watch["left_at_end"]["cgroup_pids"].values())
    assert processes_by_node(run_id) == {}
    assert live_processes_of_run(job.run_dir) == []


@needs_two_nodes
def test_default_spec_over_two_nodes_one_step_per_phase(two_node_jobs: dict[str, Watched]) -> None:
    job = two_node_jobs["default"]
    assert job.proc.returncode == 0, job.proc.stdout + job.proc.stderr
    report = job.report
    assert report["exit_code"] == 0
    job_id = (job.run_dir / "slurm_job_id").read_text().strip()
    # Slurm's own account of each phase: one step, on both nodes, the rendezvous on the first.
    steps = re.findall(r"\[orchestrator\] (\w+): Slurm step (\d+)\.(\d+) on (\S+), rendezvous at (\S+):\d+$",
                       job.proc.stdout, re.MULTILINE)  # fmt: skip
    assert [s[0] for s in steps] == [p["name"] for p in report["phases"]] == ["stop", "go", "continuous"]
    assert [s[2] for s in steps] == ["0", "1", "2"] and {s[1] for s in steps} == {job_id}
    for phase, _, _, nodes, rendezvous in steps:
        assert nodes == "node[1-2]", phase
        assert rendezvous == "node1", phase
    # The watcher saw each phase's processes on both nodes: one torchrun agent and its worker
    # on each (node1 also runs the phase's srun).
    for phase in ("stop", "go", "continuous"):
        seen = job.watch["seen"][phase]
        assert set(seen) == set(NODES), (phase, seen)
        assert all(len(pids) >= 2 for pids in seen.values()), (phase, seen)
        results = [json.loads(p.read_text()) for p in sorted((job.run_dir / "results" / phase).glob("rank*.json"))]
        assert [(r["rank"], r["world_size"]) for r in results] == [(0, 2), (1, 2)], phase
        # Each rank ran on its own node: its pid was seen there.
        assert {r["pid"] for r in results} <= set(seen["node1"]) | set(seen["node2"])
        assert [r["pid"] in seen[node] for r, node in zip(results, NODES, strict=True)] == [True, True]


@needs_two_nodes
def test_stop_step_is_killed_on_both_nodes(two_node_jobs: dict[str, Watched]) -> None:
    job = two_node_jobs["default"]
    stop_log = (job.run_dir / "logs" / "stop.log").read_text()
    assert re.search(r"node1: task 0: Killed", stop_log), stop_log[-2000:]
    assert re.search(r"node2: task 1: Killed", stop_log), stop_log[-2000:]
    # Its step had a cgroup on each node while it ran, and nothing was in them at go's launch.
    stop_cgroups = job.watch["cgroups_seen"]["stop"]
    assert all(stop_cgroups[node] for node in NODES), stop_cgroups
    assert "stop" in job.watch["left_at_next_launch"]
    assert_nothing_left_on_any_node(job)
    assert job.report["phases"][0]["kill"]["survivors"] == []


@needs_two_nodes
def test_unmodified_lightning_script_over_two_nodes(two_node_jobs: dict[str, Watched]) -> None:
    job = two_node_jobs["script"]
    assert job.proc.returncode == 0, job.proc.stdout + job.proc.stderr
    report = job.report
    assert report["exit_code"] == 0 and report["sentinel"]["step"] == 3
    for phase in report["phases"]:
        assert phase["command"][:3] == ["srun", phase["command"][1], "--nodes=2"], phase["command"][:4]
        assert "workers.wrap.run" in phase["command"]
        assert set(job.watch["seen"][phase["name"]]) == set(NODES), phase["name"]
    assert_nothing_left_on_any_node(job)


@needs_two_nodes
def test_go_as_new_job_resumes_on_the_other_node(two_node_jobs: dict[str, Watched]) -> None:
    job = two_node_jobs["go_elsewhere"]
    assert job.proc.returncode == 0, job.proc.stdout + job.proc.stderr
    ids = dict(re.findall(r"\[orchestrator\] (stop|go): Slurm job (\d+)", job.proc.stdout))
    assert set(ids) == {"stop", "go"} and ids["stop"] != ids["go"]
    # Where the watcher saw each phase's processes: stop on one node, go on the other.
    # ("host": the orchestrator's own `sbatch --wait` for the phase, here where the wrapper runs.)
    stop_nodes, go_nodes = (set(job.watch["seen"][phase]) & set(NODES) for phase in ("stop", "go"))
    assert len(stop_nodes) == len(go_nodes) == 1 and stop_nodes != go_nodes, job.watch["seen"]
    assert f"go: its job excludes the stop job's nodes ({stop_nodes.pop()})" in job.proc.stdout
    go_script = (job.run_dir / "slurm" / "go.sh").read_text().splitlines()
    assert f"#SBATCH --dependency=afterany:{ids['stop']}" in go_script
    assert job.report["exit_code"] == 0
    assert_nothing_left_on_any_node(job)


@needs_two_nodes
def test_node_lost_mid_stop_is_its_own_verdict(two_node_jobs: dict[str, Watched]) -> None:
    job = two_node_jobs["node_lost"]
    lost = job.watch["lost"]
    assert lost["killed"], "nothing of the stop step ran on node2"
    # The node came back for the tests after this one.
    assert lost["restart_code"] == 0 and "starting slurmd for node2" in lost["restart"], lost["restart"]
    assert re.search(r"slurm is up: .*node2 (idle|mixed|allocated)", lost["restart"]), lost["restart"]
    job_id = (job.run_dir / "slurm_job_id").read_text().strip()
    assert job.proc.returncode == ExitCode.NODE_LOST, job.proc.stdout + job.proc.stderr
    expected = "error: node lost: Slurm ended the job with NODE_FAIL (node2 down); the run was not judged"
    assert one_line(job.proc.stderr) == expected
    assert f"[sbatch] job {job_id}: NODE_FAIL" in job.proc.stdout
    # Slurm did not requeue the job into the run dir its first attempt filled.
    assert (job.watch["job"]["JobState"], job.watch["job"]["Restarts"]) == ("NODE_FAIL", "0"), job.watch["job"]
    # Nothing of the run was left on the surviving node (or anywhere) when the wrapper ended,
    # nor in the job's cgroups; nor is now.
    assert set(job.watch["seen"]["stop"]) == set(NODES)
    assert job.watch["left_at_end"] == {"processes": {}, "cgroup_pids": {node: [] for node in NODES}}
    assert processes_by_node(job.watch["run_id"]) == {}
    assert cgroup_pids({job_id}) == {node: [] for node in NODES}
    assert live_processes_of_run(job.run_dir) == []
