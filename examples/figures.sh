#!/usr/bin/env bash
# Reproduce the README's figures and the paper model card's scores, with the paper-protocol model
# (MODEL=path|paper in the environment picks another; the figures in docs/ are the paper model's):
#   1. ×4 bicubic vs ficli on the fluorescence validation and test folders (dtype and hr scales);
#   2. a before/after panel (docs/before_after.png);
#   3. the USAF-1951 target, ×4, without and with Poisson noise (like the paper's Fig. 6), and a line
#      profile through its bars (docs/usaf_profile.png).
#   bash examples/figures.sh [OUT_DIR]
# Needs ../shared/data (the project's shared image folder) beside the repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
data="${FICLI_DATA:-$repo/../shared/data}"
out="${1:-runs/figures}"
model="${MODEL:-paper}"
mkdir -p "$out" "$repo/docs"

for split in val test; do
  ficli degrade "$data/fluorescence/$split" --out "$out/$split/bicubic" --skip-existing
  ficli enhance --model "$model" "$out/$split/bicubic" --out "$out/$split/ficli" --skip-existing
  for scale in dtype hr; do
    (cd "$out/$split" && ficli evaluate "$data/fluorescence/$split" bicubic ficli --data-range "$scale" \
        --summary-only --json "scores_$scale.json" --csv "scores_$scale.csv") || true  # narrow-range note only
  done
done

img=neubias__xy_16bit_rat_hippocampal_neuron.png
python "$here/make_panel.py" --crop 200,200,128 --out "$repo/docs/before_after.png" \
    --title "rat hippocampal neuron (test set), ×4: 128 × 128 px crop" \
    "HR=$data/fluorescence/test/$img" "bicubic=$out/test/bicubic/$img" "ficli=$out/test/ficli/$img"

target="$data/targets/usaf1951_capture.tif"
ficli degrade "$target" --out "$out/usaf/bicubic" --skip-existing
ficli degrade "$target" --out "$out/usaf/bicubic_poisson200" --poisson-peak 200 --seed 1 --skip-existing
ficli enhance --model "$model" "$out/usaf/bicubic" --out "$out/usaf/ficli" --skip-existing
ficli enhance --model "$model" "$out/usaf/bicubic_poisson200" --out "$out/usaf/ficli_poisson200" --skip-existing
(cd "$out/usaf" && ficli evaluate "$target" bicubic ficli bicubic_poisson200 ficli_poisson200 --data-range hr \
    --json scores.json) || true
t=usaf1951_capture.tif
ficli profile "$target" "$out/usaf/bicubic/$t" "$out/usaf/ficli/$t" --line 108,212,148,212 \
    --out "$repo/docs/usaf_profile.png" --csv "$out/usaf/profile.csv" --overwrite --title "USAF-1951 capture, ×4: a line across the group-6 bars"
python "$here/make_panel.py" --crop 60,150,100 --out "$repo/docs/usaf_panel.png" --title "USAF-1951 capture, ×4 (right: Poisson noise, peak 200 photons)" \
    "HR=$target" "bicubic=$out/usaf/bicubic/$t" "ficli=$out/usaf/ficli/$t" \
    "bicubic+noise=$out/usaf/bicubic_poisson200/$t" "ficli+noise=$out/usaf/ficli_poisson200/$t"
echo "figures in $repo/docs, scores in $out"
