#!/usr/bin/env bash
# Install torch into the venv: a CPU build where there is no NVIDIA GPU, the CUDA build where there is.
# usage: install_torch.sh PYTHON VERSION [INDEX_URL]
set -euo pipefail
py=$1 version=$2 index=${3:-}
if "$py" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$version' else 1)" 2>/dev/null; then
    exit 0
fi
pip=("$py" -m pip install)
if [ -n "$index" ]; then
    exec "${pip[@]}" "torch==$version" --index-url "$index"
fi
if [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    # PyPI's Linux wheel is the multi-GB CUDA build. Without a GPU take a CPU build: from a local
    # wheel house if pip has one configured, else from PyTorch's CPU index where it is reachable.
    "${pip[@]}" "torch==$version+cpu" 2>/dev/null && exit 0
    if curl -fsI --max-time 5 https://download.pytorch.org/whl/cpu/ >/dev/null 2>&1; then
        exec "${pip[@]}" "torch==$version" --index-url https://download.pytorch.org/whl/cpu
    fi
fi
exec "${pip[@]}" "torch==$version"
