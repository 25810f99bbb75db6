#!/usr/bin/env bash
# The GPU check, run on a machine with an NVIDIA GPU and its driver but no
# Rust toolchain: it runs what `deploy/cuda/build.sh --bundle DIR` built
# elsewhere, from the repository's root.
#
#   bash deploy/cuda/gpu-check.sh DIR [OUT]
#
# 1. The parity tests (forward, losses, gradients, three Adam steps and the
#    BatchNorm statistics against real PyTorch's fixtures) on cuda:0.
# 2. One trial's epoch (training at batch 4 plus evaluation of both splits)
#    timed on cuda:0 and on one CPU thread, on a dataset of the recordings'
#    size made by the worker's own Tetris engine.
# 3. Sweep throughput on cuda:0: trial-epochs per second of packs of 1 to
#    1024 trials trained as one computation.
# Everything it prints is also written to OUT/gpu-check.txt, the epoch
# timings as JSON to OUT/bench-*.json, the packs' to OUT/packs-cuda.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
bundle="$(cd "${1:?usage: gpu-check.sh BUNDLE_DIR [OUT]}" && pwd)"
out="${2:-.}"
mkdir -p "$out"
exec > >(tee "$out/gpu-check.txt") 2>&1
bin="$(mktemp -d)"
for name in worker parity; do
    gunzip -c "$bundle/$name.gz" >"$bin/$name"
    chmod +x "$bin/$name"
done

# The CUDA libraries the worker was linked against (CUDA 13: libcublas.so.13,
# libcurand.so.10, ...), from LD_LIBRARY_PATH or NVIDIA's Python packages on
# this machine (a PyTorch environment has them).
libs="$(find /opt /usr /root -xdev \( -name 'libcublas.so.13' -o -name 'libcublasLt.so.13' \
    -o -name 'libcurand.so.10' -o -name 'libcudart.so.13' -o -name 'libnvrtc.so.13' \) \
    -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)"
export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
echo "CUDA libraries from: $libs"
ldd "$bin/worker" | grep -E 'cuda|cublas|curand|nvrtc'

echo "== parity with PyTorch on cuda:0"
CARGO_MANIFEST_DIR="$PWD/worker" EXP025_TEST_DEVICE=cuda:0 "$bin/parity" --test-threads 1

echo "== one trial's epoch"
data="$(mktemp -d)/tetris"
"$bin/worker" datagen --out "$data" --seed 0 --train 1762 --test 440
for device in cuda:0 cpu; do
    "$bin/worker" bench --data "$data" --epochs 3 --device "$device" --threads 1 |
        tee "$out/bench-${device%%:*}.json"
done

echo "== sweep throughput: packs of K trials on cuda:0"
"$bin/worker" bench --data "$data" --epochs 1 --device cuda:0 --threads 1 \
    --packs 1,4,16,64,256,1024 | tee "$out/packs-cuda.json"
echo "gpu check: passed"
