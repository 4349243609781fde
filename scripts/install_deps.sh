#!/usr/bin/env bash
# Installs the Debian 12 packages spikeserve needs to build, test and run.
# Idempotent: packages already present are skipped without touching apt.
# Works as root or through sudo.
set -euo pipefail

# Usage: install_deps.sh [all|build]   (build: what the server binaries need
# to compile, e.g. in the image's build stage)
BUILD_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  # libraries named by the design
  libdnnl-dev ocl-icd-opencl-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev libre2-dev prometheus-cpp-dev zlib1g-dev libcurl4-openssl-dev
  # HTTP server of /metrics (event-driven; libcivetweb-dev still comes in
  # with prometheus-cpp-dev, whose CMake package looks for it)
  libmicrohttpd-dev
  # JSON of the OpenAI HTTP API (header-only)
  nlohmann-json3-dev
)
PACKAGES=(
  "${BUILD_PACKAGES[@]}"
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # observability: promtool (metrics and rules lint) and a real Prometheus
  # for the scrape test
  prometheus
  # deployment checks: yamllint, structural check of the manifests
  yamllint python3-kubernetes python3-yaml
  # TLS tests make self-signed certificates
  openssl
  # ThreadSanitizer over the server tests: Debian's Abseil and gRPC sources
  # rebuilt with TSan (scripts/tsan_deps.sh; grpc_cpp_plugin needs libprotoc)
  curl patch xz-utils libprotoc-dev libc-ares-dev libssl-dev
  # fuzzing: clang's libFuzzer (and the OpenMP runtime clang links)
  clang libclang-rt-14-dev libomp-dev
  # benchmark plots (bench/serving_sweep.sh)
  gnuplot-nox
  # python side: model download, test clients
  python3 python3-pip python3-venv python3-grpcio python3-grpc-tools python3-numpy
  # the Jinja interpreter's table checked against jinja2 (a ctest)
  python3-jinja2
  unzip ca-certificates
)

case "${1:-all}" in
  all) ;;
  build) PACKAGES=("${BUILD_PACKAGES[@]}") ;;
  *) echo "usage: install_deps.sh [all|build]" >&2; exit 2 ;;
esac

# kubectl is not installed here: the manifests need kustomize v4 or later
# (kubectl >= 1.21), and Debian 12's kubernetes-client is 1.20 (kustomize
# v2). Without one, tests/deploy/manifests_test.py is skipped outside CI.

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "deps: installing ${missing[*]}"
# Through `env`: sudo's env_reset would drop an exported DEBIAN_FRONTEND,
# and debconf could then stop at a prompt.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  --no-install-recommends "${missing[@]}"
