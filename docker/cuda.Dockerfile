# The worker built with the `cuda` feature (candle's CUDA kernels need nvcc
# at build time, so the build stage is a CUDA devel image).
#   docker build -f docker/cuda.Dockerfile -t exp025:cuda .
FROM nvidia/cuda:12.6.3-devel-ubuntu24.04 AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/*
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p worker --features cuda

FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04
COPY --from=build /src/target/release/worker /usr/local/bin/
