#!/usr/bin/env bash
# Builds and checks the worker with the `cuda` feature on a machine without
# a GPU (CI, a laptop): every target of the cuda build is linted and
# compiled, the tests included, and the worker binary is linked so that it
# runs on any machine with an NVIDIA driver.
#
#   bash deploy/cuda/build.sh            # clippy, tests built, worker built
#   bash deploy/cuda/build.sh --bundle DIR
#                                        # also puts what deploy/cuda/gpu-check.sh
#                                        # runs on a GPU machine into DIR
#
# What it needs, installed where missing (about 1 GB, kept in the cache):
# NVIDIA's compiler, headers and libraries from the Python package registry
# (`cuda-toolkit[nvcc,crt,cudart,cublas,curand,nvrtc,cccl]`), CUDA 13.0: candle's
# kernels are PTX that the GPU machine's driver compiles when they load, and
# a driver takes PTX of its own CUDA version or older (the lent H200's
# driver, 580, is CUDA 13.0; nvvm, which writes the PTX, is pinned with
# it, as the toolkit's package leaves it free). There is no GPU here to
# ask for its compute capability: CUDA_COMPUTE_CAP (default 90, H100/H200)
# says which GPUs the kernels are built for.
#
# Linking: candle turns on cudarc's link-time linking, which wants libcuda,
# libcublas, libcublasLt, libcurand, libnvrtc and libcudart when a binary is
# linked. The Python packages hold only versioned files (libcublas.so.13),
# and only a GPU machine's driver provides libcuda. So the build links
# against a CUDA_ROOT laid out here: unversioned links to the packages'
# libraries, and a stub libcuda.so.1 with every driver function cudarc
# declares, each returning CUDA_ERROR_NO_DEVICE. The binaries record
# libcuda.so.1 and the libraries' versioned names; on a GPU machine the
# driver's libcuda.so.1 and the CUDA libraries on LD_LIBRARY_PATH are loaded
# instead.
set -euo pipefail
cd "$(dirname "$0")/../.."

bundle=""
if [ "${1:-}" = "--bundle" ]; then
    bundle="${2:?--bundle needs a directory}"
fi

cache="${EXP025_CACHE:-$HOME/.cache/exp025}"
toolkit="$cache/cuda-toolkit"
cu="$toolkit/nvidia/cu13"
if [ ! -x "$cu/bin/nvcc" ]; then
    echo "installing NVIDIA's CUDA compiler and libraries (Python packages) into the cache"
    python3 -m pip install --quiet --disable-pip-version-check --target "$toolkit" \
        "cuda-toolkit[nvcc,crt,cudart,cublas,curand,nvrtc,cccl]==13.0.2" "nvidia-nvvm~=13.0.0"
fi

# The CUDA_ROOT cudarc's build script searches (lib/ and lib/stubs/).
root="$cache/cuda-root"
rm -rf "$root"
mkdir -p "$root/lib/stubs"
ln -s "$cu/bin" "$cu/include" "$cu/nvvm" "$root/"
for lib in cublas cublasLt curand cudart nvrtc; do
    versioned=("$cu/lib/lib$lib.so."*)
    ln -s "${versioned[0]}" "$root/lib/lib$lib.so"
done
cudarc="$(cargo metadata --format-version 1 --locked --features worker/cuda |
    python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')"
grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$(dirname "$cudarc")/src/driver/sys/mod.rs" |
    sed 's/^pub unsafe fn //' | sort -u |
    sed 's/.*/int &(void) { return 100; \/* CUDA_ERROR_NO_DEVICE *\/ }/' >"$root/lib/stubs/libcuda.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$root/lib/stubs/libcuda.c"
ln -s libcuda.so "$root/lib/stubs/libcuda.so.1"

export PATH="$cu/bin:$PATH"
export CUDA_ROOT="$root"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
# Its own target folder: the cuda build does not evict the CPU build's.
export CARGO_TARGET_DIR="${EXP025_CUDA_TARGET_DIR:-$cache/target-cuda}"
export CARGO_TERM_COLOR=never

cargo clippy --release --locked -p worker --features cuda --all-targets -- -D warnings
cargo build --release --locked -p worker --features cuda --bins
tests="$(cargo test --release --locked -p worker --features cuda --no-run --message-format json |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["kind"] == ["test"] and m["executable"]:
        print(m["target"]["name"], m["executable"])')"

# The binary starts here against the stub, and asking for a GPU gets the
# driver's answer as a clear error instead of a crash.
export LD_LIBRARY_PATH="$root/lib/stubs:$cu/lib"
worker="$CARGO_TARGET_DIR/release/worker"
"$worker" --version
if "$worker" train --generate 0:8:4 --epochs 1 --device cuda:0 >/dev/null 2>"$root/no-gpu.txt"; then
    echo "the cuda build trained without a GPU: the stub was not used" >&2
    exit 1
fi
grep -q "opening cuda:0" "$root/no-gpu.txt" || {
    cat "$root/no-gpu.txt" >&2
    exit 1
}
echo "cuda build: worker and tests built; without a GPU it says: $(head -1 "$root/no-gpu.txt")"

# The bundle: the worker and the parity tests, stripped and compressed
# (about 25 MB), for a GPU machine with no Rust toolchain.
if [ -n "$bundle" ]; then
    mkdir -p "$bundle"
    parity="$(echo "$tests" | awk '$1 == "parity" { print $2 }')"
    for pair in "worker:$worker" "parity:$parity"; do
        name="${pair%%:*}"
        strip -o "$bundle/$name" "${pair#*:}"
        gzip -f "$bundle/$name"
    done
    ls -l "$bundle"
fi
