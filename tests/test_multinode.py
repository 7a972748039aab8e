"""``--nnodes N``: N local torchrun agents joined by a c10d rendezvous, all killed on the sentinel."""

from __future__ import annotations

import io
import json
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.protocol import RunLayout
from orchestrator.run.events import PlainEvents
from orchestrator.run.multinode import MultiNodePhase, multinode_torchrun_command
from orchestrator.run.ports import ephemeral_low, free_port, port_for, port_range
from orchestrator.run.process_tree import pids_alive
from tests.conftest import (
    DEFAULT_SPEC,
    Run,
    assert_nothing_left,
    background_spec_run,
)


def test_agent_command_joins_a_c10d_rendezvous() -> None:
    base = ["python", "-m", "torch.distributed.run", "--standalone", "--log-dir", "/r/logs/stop", "-m", "w"]
    command = multinode_torchrun_command(base, 3, "127.0.0.1:1234", "rid-stop", Path("/r/logs/stop"), 2)
    assert "--standalone" not in command
    assert command[command.index("--nnodes") + 1] == "3"
    assert command[command.index("--rdzv-backend") + 1] == "c10d"
    assert command[command.index("--rdzv-endpoint") + 1] == "127.0.0.1:1234"
    assert command[command.index("--log-dir") + 1] == "/r/logs/stop/node2"


def test_rendezvous_ports_come_from_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    # srun and other programs take ports of the ephemeral range unasked (bind to port 0):
    # a rendezvous port chosen there can be gone by the time torchrun binds it.
    ports = port_range()
    assert ports.stop <= ephemeral_low() and len(ports) > 1000
    chosen = free_port()
    assert chosen in ports
    # A port another program holds is skipped: start the search at one held here.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", chosen))
        monkeypatch.setattr("orchestrator.run.ports.random.randrange", lambda n: ports.index(chosen))
        assert free_port() not in (chosen, *range(ephemeral_low(), 65536))
    assert port_for("e58e2c01a4d8463b") == port_for("e58e2c01a4d8463b") in ports


# Reads no other test's files: it goes in the background lane (tests/background.py).
two_nodes_run = background_spec_run(
    "two_nodes_run", DEFAULT_SPEC, "--nnodes", "2", "--nproc-per-node", "1", "--quiet", "--single-stop"
)


def test_two_nodes_one_process_each_resume_verified(two_nodes_run: Run) -> None:
    run = two_nodes_run
    assert run.returncode == 0, run.stderr
    report = run.report
    stop = report["phases"][0]
    assert stop["command"][stop["command"].index("--nnodes") + 1] == "2"
    # Two agents and one worker each, all killed on the sentinel and confirmed gone.
    assert len(stop["kill"]["pids"]) >= 4
    assert stop["kill"]["survivors"] == []
    for phase in ("stop", "go", "continuous"):
        results = sorted((run.run_dir / "results" / phase).glob("rank*.json"))
        assert [p.name for p in results] == ["rank0.json", "rank1.json"], phase
        pids = {json.loads(p.read_text())["pid"] for p in results}
        assert len(pids) == 2, phase
    # Each node keeps its own torchrun logs.
    assert sorted(p.name for p in (run.run_dir / "logs" / "stop").iterdir()) == ["node0", "node1"]
    assert_nothing_left(run.run_dir)


def test_one_failed_agent_ends_the_phase_and_the_others_are_killed(tmp_path: Path) -> None:
    # Real processes standing in for agents: one fails at once, the other would run a minute.
    events = PlainEvents(io.StringIO())
    layout = RunLayout(tmp_path / "run")
    fail, sleep = "import sys; sys.exit(3)", "import time; time.sleep(60)"
    commands = [[sys.executable, "-c", fail], [sys.executable, "-c", sleep]]
    phase = MultiNodePhase("stop", commands, layout, uuid.uuid4().hex, 60.0, events)
    sleeper = phase.agents[1].pid
    deadline = time.monotonic() + 30
    code = phase.poll()
    while code is None and time.monotonic() < deadline:
        time.sleep(0.05)
        code = phase.poll()
    assert code == 3
    assert phase.reap() == 3
    assert pids_alive([sleeper]) == []
