#!/usr/bin/env bash
# The GPU measurements still owed, in one call that fits a lent machine (about 9 minutes):
#   1. bench/gpu_sweep.py: which fast-path settings bring 50-step 8-view CFG sampling under 1.6 s (issue 3);
#   2. bench/recon_eval.py on CUDA, one people head, 24 as-generated views at 256 px (issue 12: <= 10 s target).
# Usage, from the repository root on the GPU machine:
#   bash bench/gpu_checks.sh [RESULTS_DIR] [WHEEL_DIR]
# RESULTS_DIR defaults to $OUT (the device tool's output folder) or ./gpu-results. WHEEL_DIR: a folder of
# wheels (diffusers, trimesh, xatlas, fast-simplification, mne, pooch, ...) for a machine whose Python lacks
# them and cannot reach PyPI; they are installed with --no-deps into a private folder, torch is left alone.
# A dry run on a CPU machine (checks the script, measures nothing):
#   SWEEP_ARGS="--device cpu --config reduced --steps 2 --variants eager" RECON_DEVICE=cpu bash bench/gpu_checks.sh /tmp/x
set -u
results=${1:-${OUT:-gpu-results}}
wheels=${2:-}
mkdir -p "$results"
py=${PYTHON:-python}
if ! $py -c "import diffusers, trimesh, xatlas, fast_simplification, mne" 2>/dev/null; then
    if [ -n "$wheels" ]; then
        $py -m pip install -q --no-index --no-deps --target /tmp/spin-to-mesh-site "$wheels"/*.whl
        export PYTHONPATH=/tmp/spin-to-mesh-site${PYTHONPATH:+:$PYTHONPATH}
    else
        echo "missing packages: pass a WHEEL_DIR or install the project (pip install -e '.[synth]')" >&2
        exit 2
    fi
fi
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$results/gpu.txt"
fi
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$results/gpu.txt"
# shellcheck disable=SC2086  # SWEEP_ARGS is a list of words
timeout 450 $py bench/gpu_sweep.py --json "$results/sweep.json" --budget-s 330 ${SWEEP_ARGS:-} 2>&1 \
    | tee "$results/sweep.log"
echo "sweep exit ${PIPESTATUS[0]}"
timeout 100 $py bench/recon_eval.py --device "${RECON_DEVICE:-cuda}" --heads ada --variants as_generated \
    --views 24 --sizes 256 --json "$results/recon.json" 2>&1 | tee "$results/recon.log"
echo "recon exit ${PIPESTATUS[0]}"
