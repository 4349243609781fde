# spikeserve image: multi-stage, Debian 12 both stages, non-root, the default
# model and plan baked in (override: mount another model read-only at
# /models and set SPIKESERVE_MODEL / SPIKESERVE_PLAN).
#
#   make image              (podman build --format docker -t spikeserve .)
#   podman run --init -p 50051:50051 -p 9464:9464 spikeserve
#
# Every server flag is an environment variable SPIKESERVE_<FLAG>.

# ---- build: the project's own make target, portable code (no -march) ----
FROM debian:bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
COPY scripts/install_deps.sh /src/scripts/install_deps.sh
RUN bash /src/scripts/install_deps.sh build \
    && apt-get install -y -qq --no-install-recommends make \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY . /src
WORKDIR /src
RUN make server BUILD=/build

# ---- runtime: only the shared libraries the binaries link ----
FROM debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends \
       libdnnl2 libgrpc++1.51 libprotobuf32 libabsl20220623 libre2-9 \
       libprometheus-cpp-core1.0 libmicrohttpd12 \
       libgomp1 zlib1g \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home spikeserve
COPY --from=build /build/server/spikeserve /build/tools/spikeserve-health-probe \
     /usr/local/bin/
ARG MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
ARG PLAN=plans/smollm2-135m-instruct.json
COPY ${MODEL} /models/model.gguf
COPY ${PLAN} /models/plan.json
USER 10001:10001
ENV SPIKESERVE_MODEL=/models/model.gguf \
    SPIKESERVE_PLAN=/models/plan.json \
    SPIKESERVE_HOST=0.0.0.0 \
    SPIKESERVE_GRPC_PORT=50051 \
    SPIKESERVE_METRICS_PORT=9464 \
    SPIKESERVE_DRAIN_TIMEOUT=30s \
    OMP_NUM_THREADS=2
EXPOSE 50051 9464 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["/bin/sh", "-c", "exec /usr/local/bin/spikeserve-health-probe --addr 127.0.0.1:${SPIKESERVE_GRPC_PORT}"]
# Exec form: the server is PID 1 (or under --init) and gets SIGTERM itself;
# it drains and exits 0.
ENTRYPOINT ["/usr/local/bin/spikeserve"]
