#!/usr/bin/env bash
# The GPU check of this project, in one go (issue 15): every test marked `gpu`, then the
# figures the README records (benchmarks on the GPU), in under 8 minutes on one GPU.
#
#   bash scripts/device_check.sh [--dry-run]
#
# --dry-run lists what would run (the gpu tests as pytest collects them, the benchmark
# commands) and exits 0 without running anything; a CPU test covers it
# (tests/test_device_check.py). Without a GPU (no nvidia-smi) the real run exits 3.
# Each step has its own time limit; the whole script stops at DEVICE_CHECK_BUDGET_S
# (default 450 s) so that it fits one 8-minute device call with room to spare.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python}"
BUDGET_S="${DEVICE_CHECK_BUDGET_S:-450}"
DRY=0
case "${1:-}" in
    --dry-run) DRY=1 ;;
    "") ;;
    *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

# The tests marked `gpu`, found without importing anything (collection imports torch).
GPU_TESTS="$("$PY" - <<'PYEOF'
import ast, pathlib
for path in sorted(pathlib.Path("tests").glob("test_*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and any("mark.gpu" in ast.unparse(d) for d in node.decorator_list):
            print(f"{path}::{node.name}")
PYEOF
)"
GPU_FILES="$(echo "$GPU_TESTS" | cut -d: -f1 | sort -u | tr '\n' ' ')"

# The steps: a name, a time limit (s) and a command line.
STEPS=(
    "gpu-tests|300|$PY -m pytest -m gpu -q -rs -p no:cacheprovider $GPU_FILES"
    "recording|150|$PY benchmarks/recording_cost.py --device cuda --sizes 25,300 --steps 12 --repeat 1"
    "overhead|60|$PY benchmarks/overhead.py"
    "speed|150|$PY benchmarks/speed.py"
)

if [ "$DRY" = 1 ]; then
    echo "device_check: dry run (nothing is run); budget ${BUDGET_S}s"
    echo "gpu tests (marked gpu):"
    echo "$GPU_TESTS" | sed 's/^/  /'
    echo "steps:"
    for step in "${STEPS[@]}"; do
        IFS='|' read -r name limit command <<<"$step"
        echo "  $name (limit ${limit}s): $command"
    done
    exit 0
fi

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "device_check: no nvidia-smi here: this check needs a CUDA GPU" >&2
    exit 3
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'

start=$(date +%s)
failed=0
for step in "${STEPS[@]}"; do
    IFS='|' read -r name limit command <<<"$step"
    left=$((BUDGET_S - ($(date +%s) - start)))
    if [ "$left" -le 10 ]; then
        echo "device_check: $name skipped: the ${BUDGET_S}s budget is spent"
        failed=1
        continue
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (limit ${limit}s): $command"
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" $command
    rc=$?
    echo "=== $name: exit $rc after $(($(date +%s) - t0))s"
    [ "$rc" -ne 0 ] && failed=1
done
echo "device_check: total $(($(date +%s) - start))s, $([ "$failed" = 0 ] && echo 'all passed' || echo 'FAILURES above')"
exit "$failed"
