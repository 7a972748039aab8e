"""Argument parsing shared by the orchestrator's commands: every usage error is one line.

``OneLineParser`` raises ``UsageError`` instead of printing argparse's usage block and
exiting, so each command reports it as ``error: ...`` and exits 2.
"""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """A problem with the command line or its inputs, reported in one line with exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise ``UsageError``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)
