#!/usr/bin/env bash
# Builds the Hugging Face venv for the tests of zero-code mode on transformers.Trainer and
# Accelerate scripts (tests/test_hf.py): the main environment's packages (torch, Lightning,
# this project) plus the `hf` extra's (transformers, accelerate, wrapt).
#
#   bash scripts/setup_hf_venv.sh [VENV_DIR]        (default: .venv-hf)
#
# Why not in the main environment: with transformers installed, torchmetrics (which every
# Lightning import loads) imports transformers for its BERTScore, and every Lightning worker
# the suite starts pays for it: the default spec's run took 27.5 s instead of 21.7 s (2
# cores), which alone would put the suite past its 20 minutes. A user's own environment is
# theirs: `pip install 'stop-and-go[hf]'` is what they install.
# Re-running on an existing venv is cheap.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${1:-$ROOT/.venv-hf}"
PYTHON="${PYTHON:-python3}"
start=$(date +%s)

if [ ! -x "$VENV_DIR/bin/python" ]; then
    # The main environment's site-packages are seen from the venv: torch and stop-and-go are
    # not installed twice.
    "$PYTHON" -m venv --system-site-packages "$VENV_DIR"
fi
PY="$VENV_DIR/bin/python"
# The hf extra's pins (pyproject.toml), into the venv only.
"$PY" -m pip install --quiet --progress-bar off 'transformers>=5.23,<5.24' 'accelerate>=1.15,<1.16' \
    'safetensors>=0.8,<0.9' 'wrapt>=1.14'
echo "setup_hf_venv: installed in $(( $(date +%s) - start )) s into $VENV_DIR"

(cd "$ROOT" && "$PY" - <<'PY'
import accelerate
import torch
import transformers

import orchestrator
import workers.hf

print(
    f"setup_hf_venv: transformers {transformers.__version__}, accelerate {accelerate.__version__}, "
    f"torch {torch.__version__}, stop-and-go from {orchestrator.__file__}"
)
PY
)
