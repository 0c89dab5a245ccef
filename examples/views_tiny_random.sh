#!/usr/bin/env bash
# Exercise photo -> aligned face -> ViewSet without any weights: tiny UNTRAINED networks, so the views
# are meaningless noise (transforms.json and report.json say so). The photo is skimage's astronaut.
#
#   bash examples/views_tiny_random.sh [OUT_DIR] [extra `spin-to-mesh views` options]
#
# Default: 8 views per ring at 0, +20 and -15 degrees (24 views, 3 passes), 2 steps (a few minutes on
# 2 CPU cores). For a quick look: --views 4 --pitch none. On a GPU add --steps 50 --device cuda.
set -euo pipefail
out="${1:-out/views_tiny_random}"
shift || true
mkdir -p "$out"
python -c "import skimage.data, PIL.Image; PIL.Image.fromarray(skimage.data.astronaut()).save('$out/astronaut.png')"
spin-to-mesh views "$out/astronaut.png" -o "$out" --tiny-random "$@"
echo "ViewSet: $out/views (transforms.json, rgb/, normal/, mask/, report.json)"
