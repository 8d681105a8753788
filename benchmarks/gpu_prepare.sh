#!/usr/bin/env bash
# Run here, before `benchmarks/gpu_check.sh` on a lent GPU machine. That machine reaches no package
# registry and gets this repository alone (not ../shared), so this puts what it lacks into two
# ignored folders that the device call carries:
#   .whl/       imageio-ffmpeg 0.6.0 (ffmpeg 7.0.2, 29 MB; 0.8.x is 68 MB, over the 64 MiB a call
#               carries): the GPU image has every other dependency of ficli
#   .gpu-data/  the fluorescence test images (4.4 MB) for the precision tests
#
#   bash benchmarks/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .whl imageio-ffmpeg==0.6.0
test_images=../shared/data/fluorescence/test
[ -d "$test_images" ] || { echo "no $test_images: the precision tests will skip on the GPU machine" >&2; exit 1; }
mkdir -p .gpu-data/fluorescence
cp -r "$test_images" .gpu-data/fluorescence/
du -sh .whl .gpu-data
