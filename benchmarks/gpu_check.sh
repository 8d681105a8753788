#!/usr/bin/env bash
# Everything the performance work still has to measure on a GPU, in one go (about 10 minutes on an
# H100): the half-precision tests, then `ficli bench` with and without torch.compile, as JSON
# and text under OUT (default: ./gpu-check-<date>). Paste the tables into docs/BENCHMARKS.md.
#
#   bash benchmarks/gpu_check.sh [OUT]
set -euo pipefail
out=${1:-gpu-check-$(date +%F)}
mkdir -p "$out"
python - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"no CUDA device: torch {torch.__version__} sees none (install a CUDA build of torch on a GPU machine)")
print(f"{torch.cuda.get_device_name()} · torch {torch.__version__} · CUDA {torch.version.cuda}")
EOF
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python -m pytest -q tests/test_precision.py tests/test_engine.py -rs 2>&1 | tee "$out/tests.txt"
ficli bench --device cuda --repeats 5 --compile --json "$out/bench.json" 2>&1 | tee "$out/bench.txt"
echo "written: $out/{gpu,tests,bench}.txt and $out/bench.json"
