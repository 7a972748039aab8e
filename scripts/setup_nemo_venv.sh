#!/usr/bin/env bash
# Builds the NeMo 2 venv for the `nemo2` backend: its own venv, never the system Python,
# because nemo-toolkit 2.7.3 pins lightning<=2.4.0 and megatron-core 0.15.3 pins numpy<2.
#
#   bash scripts/setup_nemo_venv.sh [VENV_DIR]        (default: .venv-nemo)
#
# Installs torch 2.13.0 first (the CPU wheel pip finds on this kind of machine; asking for
# it first keeps pip from pulling a multi-GB CUDA build), then this project with the
# `nemo` and `test` extras under constraints/nemo.txt, and checks that NeMo's
# `nemo.lightning` and `nemo.collections.llm` import and that the nemo2 spec loads.
# Prints the install time and the venv size. Re-running on an existing venv is cheap.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${1:-$ROOT/.venv-nemo}"
PYTHON="${PYTHON:-python3}"
start=$(date +%s)

if [ ! -x "$VENV_DIR/bin/python" ]; then
    "$PYTHON" -m venv "$VENV_DIR"
fi
PY="$VENV_DIR/bin/python"

"$PY" -m pip install --quiet --progress-bar off 'torch==2.13.0'
"$PY" -m pip install --quiet --progress-bar off -e "$ROOT[nemo,test]" -c "$ROOT/constraints/nemo.txt"

installed=$(date +%s)
echo "setup_nemo_venv: installed in $((installed - start)) s into $VENV_DIR"

# NeMo's imports: what the seed harness and the nemo2 backend use.
"$PY" - <<'PY'
import nemo
import nemo.collections.llm  # noqa: F401
import nemo.lightning  # noqa: F401
import lightning
import megatron.core
import torch

print(
    f"setup_nemo_venv: nemo {nemo.__version__}, megatron-core {megatron.core.__version__}, "
    f"lightning {lightning.__version__}, torch {torch.__version__}"
)
PY

# Our side: the nemo2 spec loads and picks its harness in this venv.
(cd "$ROOT" && "$PY" - <<'PY'
from workers.spec_loader import load_spec_module, pick_harness

cls = pick_harness(load_spec_module("harness_specs/nemo_gpt_tiny.py"), None)
print(f"setup_nemo_venv: spec harness_specs/nemo_gpt_tiny.py loads: {cls.__name__} (backend {cls.backend.name})")
PY
)

echo "setup_nemo_venv: venv size $(du -sh "$VENV_DIR" | cut -f1), total $(($(date +%s) - start)) s"
