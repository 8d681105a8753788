#!/usr/bin/env bash
# The paper's Table 1 on a small CPU budget: fine-tune the same stage-1 model on fluorescence images
# with no TG loss and with TG at k_max 1, N/2 and N (generator only, the same steps and seed for
# each), then score every variant, bicubic, an optional GAN+TG model and the default model on the
# test folder (hr scale) and draw the panel docs/ablation_panel.png.
#   bash examples/ablation.sh STAGE1_MODEL [OUT_DIR] [STEPS] [GAN_TG_MODEL]
# Needs ../shared/data (the project's shared image folder) beside the repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${FICLI_DATA:-$here/../../shared/data}"
init="$1"; out="${2:-runs/ablation}"; steps="${3:-150}"; gan="${4:-}"
common=(--stage finetune --init "$init" --data "$data/fluorescence/train" --val "$data/fluorescence/val"
        --no-gan --batch 16 --crop 32 --lr 1e-4 --steps "$steps" --epochs 2 --patience 2 --seed 0)
ficli train "${common[@]}" --out "$out/no_tg" --tg-weight 0
for k in 1 N/2 N; do
  ficli train "${common[@]}" --out "$out/tg_k${k//\//_}" --tg-weight 10 --k-max "$k"
done
ficli degrade "$data/fluorescence/test" --out "$out/test/bicubic" --skip-existing
for run in no_tg tg_k1 tg_kN_2 tg_kN; do
  ficli enhance "$out/test/bicubic" --out "$out/test/$run" --model "$out/$run/best.safetensors" --skip-existing
done
methods=(bicubic no_tg tg_k1 tg_kN_2 tg_kN)
if [ -n "$gan" ]; then
  ficli enhance "$out/test/bicubic" --out "$out/test/gan_tg" --model "$gan" --skip-existing
  methods+=(gan_tg)
fi
ficli enhance "$out/test/bicubic" --out "$out/test/default" --skip-existing
methods+=(default)
cd "$out/test"
ficli evaluate "$data/fluorescence/test" "${methods[@]}" --data-range hr \
    --summary-only --json ../ablation.json --csv ../ablation.csv
cd - > /dev/null
img=bian__maize_clsm.png; t="$out/test"
python "$here/make_panel.py" --crop 250,250,96 --out docs/ablation_panel.png \
    --title "maize stem (test set), ×4, 96 × 96 px: TG ablation ($((2 * steps)) generator-only steps each) and the default model" \
    "HR=$data/fluorescence/test/$img" "bicubic=$t/bicubic/$img" "no TG=$t/no_tg/$img" "TG k=1=$t/tg_k1/$img" \
    "TG k=N/2=$t/tg_kN_2/$img" "TG k=N=$t/tg_kN/$img" ${gan:+"GAN+TG=$t/gan_tg/$img"} "default=$t/default/$img"
