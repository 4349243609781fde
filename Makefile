# spikeserve: the two commands of the quick start are `make run` and
# `make test`; every other target is a step they take.
SHELL := /bin/bash
BUILD ?= build
BUILD_ASAN ?= build-asan
BUILD_TYPE ?= Release
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
PLAN ?= plans/smollm2-135m-instruct.json
PORT ?= 50051
HTTP_PORT ?= 8080
METRICS_PORT ?= 9464
# make run listens on this machine only; HOST=0.0.0.0 serves the network
# (with no bearer token: see README "Authentication").
HOST ?= 127.0.0.1
THREADS ?= 2
export OMP_NUM_THREADS ?= $(THREADS)
# ccache hits across clones and build trees: hash paths relative to here.
export CCACHE_BASEDIR ?= $(CURDIR)

.PHONY: all deps model configure build server fuzz test test-tsan test-unit test-asan run bench eval format clean image image-test

all: build

deps:
	@bash scripts/install_deps.sh

model:
	@bash scripts/fetch_model.sh

$(BUILD)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

configure: $(BUILD)/build.ninja

build: deps configure
	cmake --build $(BUILD)

# The server binaries only (no tests, no benchmarks): the image's build
# stage runs `make server BUILD=/build`.
server:
	bash scripts/install_deps.sh build
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DSPIKESERVE_BUILD_TESTS=OFF -DSPIKESERVE_BUILD_BENCH=OFF
	cmake --build $(BUILD) --target spikeserve spikeserve-health-probe

# Every test: unit and golden tests, then all but the FP32 golden forward
# and the batch-invariance generations (minutes at -O0) and the Python
# tests (the full-size model at -O0 is too slow) again under
# AddressSanitizer + UndefinedBehaviorSanitizer.
test: build model test-unit test-asan test-tsan

test-unit: build model
	ctest --test-dir $(BUILD) --output-on-failure -j2

$(BUILD_ASAN)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DSPIKESERVE_SANITIZE=address,undefined -DSPIKESERVE_BUILD_BENCH=OFF

test-asan: deps $(BUILD_ASAN)/build.ninja
	cmake --build $(BUILD_ASAN)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ctest --test-dir $(BUILD_ASAN) --output-on-failure -j2 -E '^GoldenLogits|^DefaultModel/BatchInvariance|^Python|^Deploy'

# Serves the default model (W8A8 with its plan when the plan exists) on
# PORT until SIGTERM/Ctrl-C. See README "Call it" for a client.
run: build model
	$(BUILD)/server/spikeserve --model $(MODEL) $(if $(wildcard $(PLAN)),--plan $(PLAN)) \
	  --host $(HOST) --grpc_port $(PORT) --http_port $(HTTP_PORT) \
	  --metrics_port $(METRICS_PORT) --threads $(THREADS)

bench: build model
	$(BUILD)/bench/model_bench
	$(BUILD)/bench/linear_bench
	$(BUILD)/bench/attention_bench

# Calibrates plans, evaluates every quantization scheme against FP32 and
# writes docs/accuracy.md (about an hour on 2 cores; EVAL_WINDOWS=4 for a
# quick look; LLAMACPP_VENV=~/.cache/spikeserve/golden-venv adds llama.cpp's
# own Q4_0 and Q4_K_M files scored on the same windows).
EVAL_WINDOWS ?= 0
eval: build model
	bash scripts/eval_all.sh $(BUILD) $(MODEL) $(EVAL_WINDOWS)

# libFuzzer targets (clang, ASan + UBSan), FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

# The engine, KV cache, sampler and server tests under ThreadSanitizer.
# TSan only sees synchronization in instrumented code, so the server tests
# run on Debian's own Abseil and gRPC rebuilt with TSan (scripts/tsan_deps.sh,
# cached in TSAN_DEPS; ~15 min cold on two cores) in place of the packaged
# ones. One OpenMP thread: Debian's libgomp is not instrumented either.
# tests/tsan.supp holds the two suppressions (OpenSSL, Abseil) and why.
BUILD_TSAN ?= build-tsan
TSAN_DEPS ?= $(HOME)/.cache/spikeserve/tsan-deps
TSAN_TESTS := engine_test kv_cache_test sampler_test request_validation_test \
  server_test metrics_test security_test soak_test openai_http_test \
  chat_prompt_test
TSAN_SOAK_REQUESTS ?= 2000
$(BUILD_TSAN)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD_TSAN) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSPIKESERVE_SANITIZE=thread -DSPIKESERVE_BUILD_BENCH=OFF

test-tsan: deps $(BUILD_TSAN)/build.ninja
	bash scripts/tsan_deps.sh $(TSAN_DEPS)
	cmake --build $(BUILD_TSAN) --target $(TSAN_TESTS)
	@LD_LIBRARY_PATH=$(TSAN_DEPS)/lib ldd $(BUILD_TSAN)/tests/server_test | \
	  grep -q '$(TSAN_DEPS)/lib/libgrpc.so' || { \
	  echo "test-tsan: server_test does not load the TSan gRPC of $(TSAN_DEPS)"; exit 1; }
	for t in $(TSAN_TESTS); do \
	  LD_LIBRARY_PATH=$(TSAN_DEPS)/lib OMP_NUM_THREADS=1 \
	  SPIKESERVE_SOAK_REQUESTS=$(TSAN_SOAK_REQUESTS) \
	  TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  $(BUILD_TSAN)/tests/$$t --gtest_brief=1 || exit 1; \
	done

# The container image (podman; see scripts/image.sh for the set-up it does:
# podman, runc, a locally built debian:bookworm base cached under
# ~/.cache/spikeserve). image-test also smoke-tests it.
IMAGE ?= spikeserve:latest
image: deps model
	bash scripts/image.sh build $(IMAGE)

image-test: deps model
	bash scripts/image.sh test $(IMAGE)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) build-fuzz
