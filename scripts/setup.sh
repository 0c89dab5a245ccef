#!/usr/bin/env bash
# One-command set-up: a virtual environment (.venv) with spin-to-mesh, Prefect and the test tools.
#
#   bash scripts/setup.sh
#
# Environment knobs:
#   TORCH_SPEC   what to install for torch first (default torch==2.13.0, a CPU build where pip's
#                find-links provide one). On a CUDA machine use e.g.
#                TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128".
#   EXTRAS       extras of spin-to-mesh to install (default align,flows,synth,usd,dev; on a GPU host
#                replace align by gpu (onnxruntime-gpu) — never both).
#   VENV         where to create the environment (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-align,flows,synth,usd,dev}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [[ ",$EXTRAS," == *",align,"* && ",$EXTRAS," == *",gpu,"* ]]; then
  echo "setup: choose the 'align' extra (onnxruntime) OR 'gpu' (onnxruntime-gpu), not both:" >&2
  echo "       both wheels write the same onnxruntime module." >&2
  exit 2
fi

echo "==> creating $VENV with $($PYTHON --version)"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

echo "==> installing $TORCH_SPEC first (an unpinned torch would pull a multi-GB CUDA build)"
# shellcheck disable=SC2086
"${PIP[@]}" install -q $TORCH_SPEC

echo "==> installing spin-to-mesh[$EXTRAS] (editable)"
"${PIP[@]}" install -q -e ".[$EXTRAS]"

if [[ ",$EXTRAS," == *",align,"* || ",$EXTRAS," == *",gpu,"* ]]; then
  echo "==> fetching MediaPipe's face mesh and selfie models (Apache-2.0) from the pinned PyPI wheel"
  "$VENV/bin/python" -m align.mediapipe_models   # sha256-verified, into ~/.cache/spin-to-mesh
fi

if command -v npm >/dev/null 2>&1; then
  echo "==> installing the Khronos glTF validator (npm, used by exporters.validate and the tests)"
  npm ci --no-audit --no-fund --loglevel=error   # package-lock.json: the exact validator build, integrity-checked
else
  echo "==> npm not found: GLB validation (exporters.validate) is unavailable until Node.js + npm are installed"
fi

echo "==> done. Try: $VENV/bin/spin-to-mesh doctor"
