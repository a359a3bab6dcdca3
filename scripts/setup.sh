#!/usr/bin/env bash
# Create (or update) .venv with segbench and its test tools.
#
# torch is the one dependency that needs care: pyproject asks for a range (torch>=2.11) so that an
# existing CUDA torch on a GPU machine is kept. On a CPU machine we install torch==2.13.0 *first*
# (the CPU build lying on disk), so that range is already satisfied and pip never pulls a multi-GB
# CUDA build from the index.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${SEGBENCH_VENV:-.venv}
CPU_TORCH="torch==2.13.0"

has_torch() { "$1" -c 'import sys, torch; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 11))' 2>/dev/null; }
has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

if [ ! -x "$VENV/bin/python" ]; then
    if has_torch "$PYTHON"; then
        # Keep the machine's own (e.g. CUDA) torch: the venv sees it through system site-packages.
        "$PYTHON" -m venv --system-site-packages "$VENV"
    else
        "$PYTHON" -m venv "$VENV"
    fi
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
if ! has_torch "$VENV/bin/python"; then
    if has_gpu; then "${PIP[@]}" "torch>=2.11"; else "${PIP[@]}" "$CPU_TORCH"; fi
fi
"${PIP[@]}" -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c 'import torch, ray, transformers, bench; print(f"segbench ready in '"$VENV"': torch {torch.__version__}, ray {ray.__version__}, transformers {transformers.__version__}")'
