"""Prints stop+go vs continuous for the megatron spec (``harness_specs/megatron_gpt_tiny.py``).

    python benchmarks/megatron_overhead.py [--nproc-per-node N]

The same figures as ``benchmarks/overhead.py`` (which it runs), for a megatron-core GPT
checkpointed with ``dist_checkpointing``'s async writer. Needs the ``megatron`` extra.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "harness_specs" / "megatron_gpt_tiny.py"


def main() -> int:
    command = [sys.executable, str(REPO / "benchmarks" / "overhead.py"), str(SPEC), *sys.argv[1:]]
    return subprocess.run(command, cwd=REPO).returncode


if __name__ == "__main__":
    sys.exit(main())
