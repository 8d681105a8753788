#!/usr/bin/env bash
# The paper's Table 1 with the critic on (docs/ABLATION.md): fine-tune one shared start model on
# fluorescence with no TG loss and with TG (θ = 10) at k_max 1, N/2 and N, each with the critic at
# the finetune preset's weight (ε = 1, the paper's stage 2) and, as a control, without it; every
# variant with the same steps, for each seed. Then score every run on 256-px centre crops of the
# test folder shrunk ×4 with PIL's kernel (the training protocol) and with OpenCV's (off protocol):
# PSNR, SSIM, RMSE and the texture measure, mean ± spread over seeds (examples/ablation_table.py),
# a panel of the same crop for every variant and line profiles across USAF-1951 group-6 bars.
#   bash examples/ablation.sh START_MODEL [OUT_DIR] [STEPS] [SEEDS]
#   (CROP and BATCH in the environment set the crops [64] and batch [8]; runs that exist are kept)
# Needs ../shared/data (the project's shared image folder) beside the repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; repo="$(cd "$here/.." && pwd)"
data="${FICLI_DATA:-$repo/../shared/data}"
init="$1"; out="${2:-runs/ablation}"; steps="${3:-200}"; seeds="${4:-0 1}"
common=(--stage finetune --init "$init" --data "$data/fluorescence/train" --val "$data/fluorescence/val"
        --batch "${BATCH:-8}" --crop "${CROP:-64}" --lr 1e-4 --steps "$steps" --epochs 1 --patience 1
        --val-size 128 --val-limit 4)
declare -A tg=([no_tg]="--tg-weight 0" [tg_k1]="--tg-weight 10 --k-max 1" [tg_kN_2]="--tg-weight 10 --k-max N/2"
               [tg_kN]="--tg-weight 10 --k-max N")
variants=(no_tg tg_k1 tg_kN_2 tg_kN)
runs=()
for seed in $seeds; do
  for critic in gan gen; do
    for v in "${variants[@]}"; do
      name="${critic}_${v}_s$seed"; runs+=("$name")
      [ -f "$out/$name/last.safetensors" ] && continue
      extra=(); [ "$critic" = gen ] && extra=(--no-gan)
      # shellcheck disable=SC2086
      mkdir -p "$out"
      ficli train "${common[@]}" ${tg[$v]} "${extra[@]}" --seed "$seed" --out "$out/$name" > "$out/$name.log" 2>&1
    done
  done
done

t="$out/test"
python - "$data/fluorescence/test" "$t/hr" <<'EOF'
import sys
from pathlib import Path
from ficli.image import io
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
for p in sorted(src.glob("*.png")):
    if not (dst / p.name).exists():
        a = io.read_image(p).data
        y, x = (a.shape[0] - 256) // 2, (a.shape[1] - 256) // 2
        io.write_image(dst / p.name, a[y:y + 256, x:x + 256])
EOF
for kernel in pil cv2; do
  ficli degrade "$t/hr" --out "$t/$kernel/input" --kernel "$kernel" --skip-existing --quiet
  for name in "${runs[@]}"; do
    ficli enhance "$t/$kernel/input" --out "$t/$kernel/$name" --model "$out/$name/last.safetensors" --skip-existing --quiet
  done
  (cd "$t/$kernel" && ficli evaluate ../hr input "${runs[@]}" --data-range hr --summary-only --json scores.json > /dev/null)
done
python "$here/ablation_table.py" "$t/pil/scores.json" "$t/cv2/scores.json" --out "$repo/docs/ablation/table.md"

img=bian__maize_clsm.png; s=$(echo $seeds | cut -d' ' -f1)
panel=("HR=$t/hr/$img" "input=$t/pil/input/$img")
for critic in gan gen; do for v in "${variants[@]}"; do panel+=("$critic $v=$t/pil/${critic}_${v}_s$s/$img"); done; done
python "$here/make_panel.py" --crop 80,80,96 --out "$repo/docs/ablation/panel.png" \
    --title "maize stem (test), PIL ×4, 96 px: TG variants with the critic (gan) and without (gen), seed $s" "${panel[@]}"

target="$data/targets/usaf1951_capture.tif"; u="$out/usaf"; name=usaf1951_capture.tif
ficli degrade "$target" --out "$u/input" --skip-existing --quiet
profile=("$target" "$u/input/$name")
for v in "${variants[@]}"; do
  ficli enhance "$u/input" --out "$u/gan_$v" --model "$out/gan_${v}_s$s/last.safetensors" --skip-existing --quiet
  profile+=("$u/gan_$v/$name")
done
ficli profile "${profile[@]}" --line 108,212,148,212 --out "$repo/docs/ablation/usaf_profile.png" \
    --csv "$u/profile.csv" --overwrite --title "USAF-1951 capture ×4: group-6 bars, TG variants with the critic (seed $s)"
echo "docs/ablation/{table.md,panel.png,usaf_profile.png}; runs and scores in $out"
