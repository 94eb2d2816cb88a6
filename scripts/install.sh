#!/usr/bin/env bash
# Create .venv and install maspo (editable) with the extras given as $1 (default: test).
# PyTorch: an importable torch is reused (venv made with --system-site-packages), else the
# CPU build of torch 2.13.0 is installed first; a constraints file then pins whatever torch
# is present so no later requirement can pull another build (or CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS=${1:-test}
PY=${PYTHON:-python3}
stamp="$VENV/.installed-$EXTRAS-$(cat pyproject.toml scripts/install.sh | sha1sum | cut -c1-12)"
[ -f "$stamp" ] && exit 0
if [ ! -x "$VENV/bin/python" ]; then
  if "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "${pip[@]}" install "torch==2.13.0"
fi
torch_version=$("$VENV/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")
echo "torch==$torch_version" > "$VENV/constraints.txt"
"${pip[@]}" install -c "$VENV/constraints.txt" -e ".[$EXTRAS]"
if [ -z "${MASPO_ALLOW_CUDA:-}" ] && "${pip[@]}" list 2>/dev/null | grep -qi '^nvidia-'; then
  echo "install.sh: CUDA wheels (nvidia-*) were installed; this should not happen on CPU" >&2
  exit 1
fi
rm -f "$VENV"/.installed-*
touch "$stamp"
