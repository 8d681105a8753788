#!/usr/bin/env bash
# The main job on the shipped example phantoms: simulate ×4 low-resolution copies, sharpen them with
# the default model, and score both against the originals, side by side.
#   bash examples/quickstart.sh [OUT_DIR]        (default: /tmp/ficli-quickstart)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-/tmp/ficli-quickstart}"
ficli degrade "$here/phantoms" --out "$out/bicubic" --scale 4 --overwrite
ficli enhance "$out/bicubic" --out "$out/ficli" --overwrite
ficli evaluate "$here/phantoms" "$out/bicubic" "$out/ficli" --data-range hr --csv "$out/scores.csv" --overwrite
echo "images and scores.csv are in $out"
