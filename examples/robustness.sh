#!/usr/bin/env bash
# The robustness tables of models/MODEL_CARD.md: a model over kernels × blur scale s × noise, on
# fluorescence/test (with and without Poisson noise) and on the three sources held out of training
# (examples/splits/heldout_sources.txt; noise-free, to halve the time). Writes
# docs/robustness/<model>-<split>/{table.md,cells.csv,images.csv,heatmap.png}. About 5 minutes per
# model on the test split and 12 on the held-out one, on 2 CPU cores at 256-px crops.
#   bash examples/robustness.sh [MODEL.safetensors [NAME]]   (default: the default model, "ficli-default")
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/ficli-default.safetensors}
NAME=${2:-ficli-default}
DATA=../shared/data/fluorescence
python examples/robustness.py --model "$MODEL" --data "$DATA/test" --out "docs/robustness/$NAME-test"
python examples/robustness.py --model "$MODEL" --data @examples/splits/heldout_sources.txt --noise none \
  --out "docs/robustness/$NAME-heldout"
