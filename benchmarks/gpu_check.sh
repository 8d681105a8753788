#!/usr/bin/env bash
# What the performance work measures on a GPU, in parts that each fit one device call with time to
# spare (the minutes are estimates for an H100/H200, not yet measured; each part writes its logs
# and JSON into OUT as it goes, so a part cut short still returns what it finished):
#   1 (about 4 min): the GPU tests (tests/test_gpu.py but torch.compile, tests/test_precision.py),
#     then `ficli bench` without torch.compile: every table, and the Targets table;
#   2 (about 3 min): the torch.compile test, then the generator compiled at 1280×720 next to the
#     plain rows of that size (`ficli bench --compile --only generator --sizes 1280x720`);
#   3 (about 3 min): `ficli video` compiled at 1280×720 (`--compile --only video --sizes 1280x720`).
#
# Here first: bash benchmarks/gpu_prepare.sh (the ffmpeg wheel and the test images). Then, through
# the device tool, from the repository root, carrying .whl and .gpu-data:
#   bash benchmarks/gpu_check.sh 1     (timeout_s 330), then 2, then 3 if the time allows
# Without an argument every part runs. OUT: the device tool's $OUT, else ./gpu-check-<date>.
# FICLI_GPU_CHECK_DEVICE=cpu rehearses the plumbing on a CPU (bench --quick; the GPU tests that
# are not CUDA-specific).
set -uo pipefail
cd "$(dirname "$0")/.."
part=${1:-all}
out=${OUT:-gpu-check-$(date +%F)}
mkdir -p "$out"
device=${FICLI_GPU_CHECK_DEVICE:-cuda}
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ! python3 -c "import imageio_ffmpeg" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ficli-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/ficli-site
fi
# No install: the machine reaches no registry, and it has ficli's other dependencies.
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[ -d .gpu-data ] && export FICLI_SHARED_DATA=$PWD/.gpu-data
python3 - "$device" <<'PY' 2>&1 | tee "$out/machine.txt" || exit 1
import sys, torch
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit(f"no CUDA device: torch {torch.__version__} sees none")
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print(f"{name} · torch {torch.__version__} · CUDA {torch.version.cuda} · cuDNN {torch.backends.cudnn.version()}")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee -a "$out/machine.txt"
bench=(python3 -m ficli bench --device "$device" --repeats 2)
if [ "$device" != cuda ]; then
    bench+=(--quick)
    export FICLI_GPU_TEST_DEVICE=cpu
fi
tests=(python3 -m pytest -q -p no:cacheprovider -rs)
status=0
run() {  # run SECONDS LOG COMMAND...: a step with its own time limit, logged; a failure is noted, the rest goes on
    local seconds=$1 log=$2; shift 2
    timeout "$seconds" "$@" 2>&1 | tee "$out/$log" || { status=1; echo "FAILED or cut at ${seconds} s: $*" | tee -a "$out/$log"; }
}
case $part in 1|all)
    run 120 tests.txt "${tests[@]}" tests/test_gpu.py tests/test_precision.py -k "not compile"
    run 200 bench.txt "${bench[@]}" --json "$out/bench.json" ;;
esac
case $part in 2|all)
    run 100 tests_compile.txt "${tests[@]}" tests/test_gpu.py -k compile
    run 180 bench_compile.txt "${bench[@]}" --compile --only generator --sizes 1280x720 --json "$out/bench_compile.json" ;;
esac
case $part in 3|all)
    run 280 bench_video_compile.txt "${bench[@]}" --compile --only video --sizes 1280x720 --json "$out/bench_video_compile.json" ;;
esac
echo "written in $out: $(ls "$out" | tr '\n' ' '); exit $status"
exit $status
