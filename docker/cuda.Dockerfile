# The worker built with the `cuda` feature. candle's kernels are compiled by
# nvcc at build time, where `docker build` sees no GPU to ask for its compute
# capability: it is a build argument. The default, 80, builds PTX that every
# GPU from the A100 on runs (newer ones compile it at load time); give the
# GPUs' own, e.g. 90 for H100/H200, to skip that.
#   docker build -f docker/cuda.Dockerfile --build-arg CUDA_COMPUTE_CAP=90 -t exp025:cuda .
FROM nvidia/cuda:12.6.3-devel-ubuntu24.04 AS build
ARG CUDA_COMPUTE_CAP=80
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/*
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH \
    CUDA_ROOT=/usr/local/cuda \
    CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP} \
    # The binary links libcuda, which only a GPU host's driver provides: link
    # against the toolkit's stub; the NVIDIA container runtime mounts the
    # real one.
    RUSTFLAGS="-L native=/usr/local/cuda/lib64/stubs"
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p worker --features cuda

# The runtime image holds cuBLAS, cuRAND and the CUDA runtime the worker
# loads; the driver comes from the host.
FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04
COPY --from=build /src/target/release/worker /usr/local/bin/
