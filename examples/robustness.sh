#!/usr/bin/env bash
# The robustness table of README.md and models/MODEL_CARD.md: the default model and the paper-protocol
# model over kernels × blur scale s × noise, on fluorescence/test and on the three sources held out of
# training (examples/splits/heldout_sources.txt). Writes docs/robustness/<model>-<split>/{table.md,
# cells.csv,images.csv,heatmap.png}. About 5 minutes per model and split on 2 CPU cores at 256 px crops.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data/fluorescence
for model in ficli-default ficli-paper; do
  python examples/robustness.py --model "models/$model.safetensors" --data "$DATA/test" --out "docs/robustness/$model-test"
  python examples/robustness.py --model "models/$model.safetensors" --data @examples/splits/heldout_sources.txt \
    --out "docs/robustness/$model-heldout"
done
