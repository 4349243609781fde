# spikeserve: the two commands of the quick start are `make run` and
# `make test`; every other target is a step they take.
SHELL := /bin/bash
BUILD ?= build
BUILD_ASAN ?= build-asan
BUILD_TYPE ?= Release
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
PLAN ?= plans/smollm2-135m-instruct.json
PORT ?= 50051
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
# (minutes at -O0) and the Python tests (the full-size model at -O0
# is too slow) again under AddressSanitizer + UndefinedBehaviorSanitizer.
test: build model test-unit test-asan test-tsan

test-unit:
	ctest --test-dir $(BUILD) --output-on-failure -j2

$(BUILD_ASAN)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DSPIKESERVE_SANITIZE=address,undefined -DSPIKESERVE_BUILD_BENCH=OFF

test-asan: deps $(BUILD_ASAN)/build.ninja
	cmake --build $(BUILD_ASAN)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ctest --test-dir $(BUILD_ASAN) --output-on-failure -j2 -E '^GoldenLogits|^Python|^Deploy'

# Serves the default model (W8A8 with its plan when the plan exists) on
# PORT until SIGTERM/Ctrl-C. See README "Call it" for a client.
run: build model
	$(BUILD)/server/spikeserve --model $(MODEL) $(if $(wildcard $(PLAN)),--plan $(PLAN)) \
	  --grpc_port $(PORT) --threads $(THREADS)

bench: build model
	$(BUILD)/bench/model_bench
	$(BUILD)/bench/linear_bench

# Calibrates plans, evaluates every quantization scheme against FP32 and
# writes docs/accuracy.md (about an hour on 2 cores; EVAL_WINDOWS=4 for a
# quick look).
EVAL_WINDOWS ?= 0
eval: build model
	bash scripts/eval_all.sh $(BUILD) $(MODEL) $(EVAL_WINDOWS)

# libFuzzer targets (clang, ASan + UBSan), FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

# The engine's tests under ThreadSanitizer (one OpenMP thread: Debian's
# libgomp, like libgrpc, is not instrumented and would only report false
# positives; the server tests need an instrumented gRPC for the same reason).
BUILD_TSAN ?= build-tsan
$(BUILD_TSAN)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD_TSAN) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSPIKESERVE_SANITIZE=thread -DSPIKESERVE_BUILD_BENCH=OFF

test-tsan: deps $(BUILD_TSAN)/build.ninja
	cmake --build $(BUILD_TSAN) --target engine_test kv_cache_test sampler_test
	for t in engine_test kv_cache_test sampler_test; do \
	  OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1 $(BUILD_TSAN)/tests/$$t || exit 1; \
	done

# The container image (podman; see scripts/image.sh for the set-up it does:
# podman, runc, a locally built debian:bookworm base cached under
# ~/.cache/spikeserve). image-test also smoke-tests it.
IMAGE ?= spikeserve:latest
image: model
	bash scripts/image.sh build $(IMAGE)

image-test: model
	bash scripts/image.sh test $(IMAGE)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) build-fuzz
