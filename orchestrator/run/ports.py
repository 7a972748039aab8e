"""Rendezvous ports that no other program can take before torchrun binds them.

A phase's c10d rendezvous store binds its port moments after the orchestrator chose it,
and meanwhile other programs open listening sockets of their own: ``srun`` does for every
step. A port from the kernel's ephemeral range (``bind`` to port 0) can be handed to one of
them in between; torchrun's agent then finds the port taken, takes the listener for the
store's server and waits on it forever (seen in the Slurm tests: the step's agent waited on
``srun``'s own socket). So the ports come from below the ephemeral range, where the kernel
never hands out a port unasked: only a program that names the port can take it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

# The lowest port used: above the well-known and most registered services' ports.
FIRST_PORT = 20000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LINUX_EPHEMERAL_LOW = 32768


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default where it cannot be read)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _LINUX_EPHEMERAL_LOW


def port_range() -> range:
    """Where rendezvous ports come from: ``FIRST_PORT`` up to the ephemeral range."""
    high = ephemeral_low()
    return range(FIRST_PORT, high) if high > FIRST_PORT + 100 else range(10000, 20000)


def port_for(key: str) -> int:
    """A port of ``port_range()`` derived from ``key`` (a run id): the same on every host and job."""
    ports = port_range()
    return ports[int.from_bytes(key.encode(), "big") % len(ports)]


def free_port(host: str = "127.0.0.1") -> int:
    """A port of ``port_range()`` that is free on ``host`` right now, from a random start.

    The random start keeps orchestrators that share a machine apart; the bind test skips a
    port another program holds.
    """
    ports = port_range()
    start = random.randrange(len(ports))
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {ports.start}-{ports.stop - 1} on {host}")
