"""The nodes of the two-node test cluster (``scripts/start_slurm.sh``), seen from this host.

Each node's ``slurmd``, and so everything its jobs run, lives in the node's own network
namespace (``/run/netns/slurm-<node>``): a process is on node X when its
``/proc/PID/ns/net`` is X's namespace. Processes of a run carry ``STOP_AND_GO_RUN_ID``
(``<run id>.<phase>``), which srun passes on to every node.

Run as a program it is a watcher: it runs a command (an ``orchestrator sbatch`` wrapper,
its output passed through) and, while it runs, records per phase on which nodes that
phase's processes ran, and what of each phase was left on each node when the next phase
was launched (the orchestrator launches it only after the kill is confirmed): its
processes, and what was still in its Slurm step cgroups. It writes that to a JSON file:

    python -m tests.slurm_nodes WATCH.json RUN_DIR [--lose-node NODE] -- python -m orchestrator sbatch ...

``--lose-node NODE`` loses that node once the stop step runs there: its ``slurmd``, its
``slurmstepd`` and the step's processes there are SIGKILLed. Once the command has ended,
``scripts/start_slurm.sh`` brings the node back (its output goes to the JSON file too).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from orchestrator.protocol import PHASE_CONTINUOUS, tag_matches

NODES = ("node1", "node2")
REPO = Path(__file__).resolve().parents[1]
POLL_S = 0.3


def netns_inodes() -> dict[int, str]:
    """The network namespace inode of each node -> the node's name."""
    found = {}
    for node in NODES:
        path = Path(f"/run/netns/slurm-{node}")
        if path.exists():
            found[path.stat().st_ino] = node
    return found


def two_nodes_reason() -> str | None:
    """None if the two-node cluster is up, each node at its own address, else why not (for a skip)."""
    if shutil.which("sinfo") is None:
        return "Slurm is not installed (bash scripts/start_slurm.sh installs and starts it, as root)"
    proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T %o"], capture_output=True, text=True, timeout=30)
    nodes = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines() if len(line.split()) == 3}
    up = [n for n in NODES if n in nodes and nodes[n][0].rstrip("*~#") in ("idle", "mixed", "allocated", "completing")]
    if proc.returncode != 0 or len(up) < len(NODES):
        return (
            f"the two-node Slurm cluster is not up (nodes: {nodes or proc.stderr.strip()}); run scripts/start_slurm.sh"
        )
    if len({nodes[n][1] for n in NODES}) < len(NODES) or len(netns_inodes()) < len(NODES):
        # start_slurm.sh's fallback: two slurmd on one host, which these tests cannot tell apart.
        return "the Slurm nodes share one address (no network namespace of their own); see scripts/start_slurm.sh"
    return None


def node_of(pid: int, inodes: dict[int, str]) -> str:
    """The node a process runs on, or ``host`` outside every node."""
    try:
        return inodes.get(os.stat(f"/proc/{pid}/ns/net").st_ino, "host")
    except OSError:
        return "gone"


def processes_by_node(tag: str) -> dict[str, list[int]]:
    """Live processes whose ``STOP_AND_GO_RUN_ID`` belongs to ``tag`` (run id or phase tag), per node."""
    inodes = netns_inodes()
    found: dict[str, list[int]] = {}
    for proc in psutil.process_iter():
        try:
            if tag_matches(proc.environ().get("STOP_AND_GO_RUN_ID"), tag) and proc.status() != psutil.STATUS_ZOMBIE:
                found.setdefault(node_of(proc.pid, inodes), []).append(proc.pid)
        except psutil.Error:
            continue
    return found


def slurm_ids(run_id: str) -> dict[str, list[str]]:
    """Phase -> the Slurm jobs (``J``) and steps (``J.S``) named for it (``stop-and-go-<phase>-<run id>``)."""
    found: dict[str, list[str]] = {}
    for flags in (["-s"], []):
        proc = subprocess.run(["squeue", "-h", *flags, "-o", "%i|%j"], capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            ident, _, name = line.strip().partition("|")
            if name.startswith("stop-and-go-") and name.endswith(f"-{run_id[:8]}"):
                found.setdefault(name[len("stop-and-go-") : -len(run_id[:8]) - 1], []).append(ident)
    return found


def cgroups_of(ident: str) -> dict[str, list[str]]:
    """The freezer cgroups of a job (``J``: all its steps) or step (``J.S``) on each node.

    Slurm makes one per step on each node the step runs on and removes it once every
    process in it has ended.
    """
    job, _, step = ident.partition(".")
    pattern = f"uid_*/job_{job}/step_{step}" if step else f"uid_*/job_{job}/step_*"
    found = {}
    for node in NODES:
        base = Path(f"/sys/fs/cgroup/freezer/slurm_{node}")
        found[node] = sorted(str(p.relative_to(base)) for p in base.glob(pattern))
    return found


def cgroup_pids(idents: set[str]) -> dict[str, list[int]]:
    """The processes still in the cgroups of these jobs or steps, per node (none: an empty list).

    slurmstepd removes a step's cgroup a moment after the step has ended; an empty one left
    for that moment holds nothing, so what counts is what is in it.
    """
    found: dict[str, list[int]] = {}
    for ident in idents:
        for node, paths in cgroups_of(ident).items():
            base = Path(f"/sys/fs/cgroup/freezer/slurm_{node}")
            for path in paths:
                for procs in (base / path).rglob("cgroup.procs"):
                    with contextlib.suppress(OSError):
                        found.setdefault(node, []).extend(int(pid) for pid in procs.read_text().split())
            found.setdefault(node, [])
    return found


def lose_node(node: str, tag: str) -> list[int]:
    """Kills ``node``'s slurmd and slurmstepd and every process of ``tag`` there: a node lost."""
    inodes = netns_inodes()
    victims = processes_by_node(tag).get(node, [])
    for proc in psutil.process_iter(["name", "cmdline"]):
        daemon = proc.info["name"] in ("slurmd", "slurmstepd") or (proc.info["cmdline"] or [""])[0] == "slurmd"
        if daemon and node_of(proc.pid, inodes) == node:
            victims.append(proc.pid)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return sorted(set(victims))


def watch(out: Path, run_dir: Path, command: list[str], lose: str | None = None) -> int:
    """Runs ``command``, watching the run in ``run_dir``; writes what it saw to ``out``."""
    child = subprocess.Popen(command)
    lost: list[int] = []
    run_id: str | None = None
    seen: dict[str, dict[str, set[int]]] = {}  # phase -> node -> pids
    ids: dict[str, set[str]] = {}  # phase -> its Slurm jobs or steps
    groups: dict[str, dict[str, list[str]]] = {}  # phase -> node -> cgroups seen while it ran
    left: dict[str, dict] = {}  # phase -> what remained when the next phase launched
    launched: list[str] = []
    while child.poll() is None:
        time.sleep(POLL_S)
        if run_id is None:
            try:
                run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
            except (OSError, ValueError, KeyError):
                continue
        new = [p.stem for p in (run_dir / "logs").glob("*.log") if p.stem not in launched]
        # A new stop or go phase is launched only once the one before it was killed or ended
        # (the continuous reference may run beside them: it proves nothing of the others).
        if [phase for phase in new if phase != PHASE_CONTINUOUS]:
            for earlier in launched:
                if earlier not in left and earlier != PHASE_CONTINUOUS:
                    left[earlier] = {"processes": processes_by_node(f"{run_id}.{earlier}"),
                                     "cgroup_pids": cgroup_pids(ids.get(earlier, set()))}  # fmt: skip
        launched += new
        for phase, named in slurm_ids(run_id).items():
            ids.setdefault(phase, set()).update(named)
        for phase in launched:
            if phase in left:
                continue
            for node, pids in processes_by_node(f"{run_id}.{phase}").items():
                seen.setdefault(phase, {}).setdefault(node, set()).update(pids)
            for ident in ids.get(phase, ()):
                for node, paths in cgroups_of(ident).items():
                    groups.setdefault(phase, {}).setdefault(node, [])
                    groups[phase][node] = sorted(set(groups[phase][node]) | set(paths))
        # After the step was recorded running there: the node is lost once the stop runs on it.
        if lose and not lost and lose in seen.get("stop", {}):
            lost = lose_node(lose, f"{run_id}.stop")
    result = {
        "run_id": run_id,
        "seen": {phase: {node: sorted(pids) for node, pids in nodes.items()} for phase, nodes in seen.items()},
        "slurm_ids": {phase: sorted(named) for phase, named in ids.items()},
        "cgroups_seen": groups,
        "left_at_next_launch": left,
    }
    # What of the run is left the moment the command has ended, per node.
    result["left_at_end"] = {"processes": processes_by_node(run_id) if run_id else {},
                             "cgroup_pids": cgroup_pids({i for named in ids.values() for i in named})}  # fmt: skip
    job_file = run_dir / "slurm_job_id"
    if job_file.exists():  # Slurm's record of the wrapper's job, before MinJobAge drops it
        shown = subprocess.run(["scontrol", "-o", "show", "job", job_file.read_text().strip()],
                               capture_output=True, text=True, check=False).stdout  # fmt: skip
        result["job"] = dict(word.split("=", 1) for word in shown.split() if "=" in word)
    if lose:
        restart = subprocess.run(["bash", str(REPO / "scripts" / "start_slurm.sh")], capture_output=True, text=True)
        result["lost"] = {"node": lose, "killed": lost, "restart_code": restart.returncode, "restart": restart.stderr}
    out.write_text(json.dumps(result, indent=1))
    return child.returncode


if __name__ == "__main__":
    out_file, run_dir_arg, *rest = sys.argv[1:]
    node_to_lose = None
    if rest[:1] == ["--lose-node"]:
        node_to_lose, rest = rest[1], rest[2:]
    assert rest[:1] == ["--"], "usage: python -m tests.slurm_nodes WATCH.json RUN_DIR [--lose-node NODE] -- COMMAND..."
    sys.exit(watch(Path(out_file), Path(run_dir_arg), rest[1:], node_to_lose))
