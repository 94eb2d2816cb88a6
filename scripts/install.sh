#!/usr/bin/env bash
# Create $VENV (default .venv) and install maspo (editable) with the extras given as $1
# (default: test; "" installs core maspo only, which any other install already includes).
# PyTorch: an importable torch is reused (venv made with --system-site-packages), else the
# CPU build of torch 2.13.0 is installed first; a constraints file then pins whatever torch
# is present so no later requirement can pull another build (or CUDA wheels).
# verl and TRL must not share an environment (see the Makefile): this refuses to add one
# to an environment that has the other.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS=${1-test}
PY=${PYTHON:-python3}
hash=$(cat pyproject.toml scripts/install.sh | sha1sum | cut -c1-12)
stamp="$VENV/.installed-${EXTRAS:-core}-$hash"
[ -f "$stamp" ] && exit 0
if [ -z "$EXTRAS" ] && compgen -G "$VENV/.installed-*-$hash" > /dev/null; then
  exit 0  # a fuller install of this same maspo is already there
fi
if [ ! -x "$VENV/bin/python" ]; then
  if "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
for pair in "verl trl" "trl verl"; do
  set -- $pair
  if [[ ",$EXTRAS," == *",$1,"* ]] && "$VENV/bin/python" -c "import $2" 2>/dev/null; then
    echo "install.sh: $VENV already has $2; verl and TRL need separate environments" \
         "(make test uses .venv for TRL and .venv-verl for verl)" >&2
    exit 1
  fi
done
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "${pip[@]}" install "torch==2.13.0"
fi
# read the version without importing torch (numpy may not be installed yet: torch warns)
torch_version=$("$VENV/bin/python" -c "from importlib.metadata import version; print(version('torch').split('+')[0])")
echo "torch==$torch_version" > "$VENV/constraints.txt"
# Both test environments get the transformers verl 0.9.1 pins: newer ones (5.2x) deprecate
# the past_key_values= argument maspo.logprobs passes, and the gradient_checkpointing
# setting TRL 1.16 sets, so the suite would show FutureWarnings. Users are not constrained.
echo "transformers<5.11" >> "$VENV/constraints.txt"
"${pip[@]}" install -c "$VENV/constraints.txt" -e ".${EXTRAS:+[$EXTRAS]}"
if [ -z "${MASPO_ALLOW_CUDA:-}" ] && "${pip[@]}" list 2>/dev/null | grep -qi '^nvidia-'; then
  echo "install.sh: CUDA wheels (nvidia-*) were installed; this should not happen on CPU" >&2
  exit 1
fi
find "$VENV" -maxdepth 1 -name '.installed-*' ! -name "*-$hash" -delete  # stale maspo versions
touch "$stamp"
