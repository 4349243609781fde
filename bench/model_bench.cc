// End-to-end forward benchmarks on a real model (default: SmolLM2-135M):
// prefill of a 512-token prompt and single-sequence decode.
//   build/bench/model_bench [--benchmark_filter=...]   (SPIKESERVE_MODEL=path)
// Thread count follows OMP_NUM_THREADS (oneDNN's OpenMP runtime).
#include <cstdlib>
#include <memory>
#include <random>

#include "benchmark/benchmark.h"
#include "runtime/model.h"

namespace spikeserve {
namespace {

struct Loaded {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Model> model;
};

const Loaded& Get() {
  static Loaded* l = [] {
    const char* env = std::getenv("SPIKESERVE_MODEL");
    auto* out = new Loaded;
    auto f = GgufFile::Open(env ? env : SPIKESERVE_DEFAULT_MODEL);
    if (!f.ok()) {
      std::fprintf(stderr, "%s\n", f.status().ToString().c_str());
      std::exit(1);
    }
    out->file = *std::move(f);
    auto m = Model::Load(*out->file);
    if (!m.ok()) {
      std::fprintf(stderr, "%s\n", m.status().ToString().c_str());
      std::exit(1);
    }
    out->model = *std::move(m);
    return out;
  }();
  return *l;
}

std::vector<int32_t> Tokens(int n, int vocab) {
  std::mt19937 rng(1);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = int32_t(rng() % vocab);
  return t;
}

void BM_Prefill(benchmark::State& state) {
  const Model& m = *Get().model;
  const int n = int(state.range(0));
  const auto tokens = Tokens(n, m.config().vocab_size);
  auto pool = *m.NewKvPool(n / 16 + 2);
  std::vector<float> logits;
  for (auto _ : state) {
    SequenceKv kv(pool.get());
    if (!m.Forward({{&kv, tokens, false}}, &logits).ok()) state.SkipWithError("forward");
  }
  state.counters["tokens_per_s"] = benchmark::Counter(
      double(n) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Prefill)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();

// Decode one token per iteration after a `range(0)`-token context; the
// context is rebuilt (untimed) when it would reach the pool's end.
void BM_Decode(benchmark::State& state) {
  const Model& m = *Get().model;
  const int ctx = int(state.range(0));
  const auto prompt = Tokens(ctx, m.config().vocab_size);
  auto pool = *m.NewKvPool((ctx + 256) / 16 + 2);
  auto kv = std::make_unique<SequenceKv>(pool.get());
  std::vector<float> logits;
  int32_t next = 1;
  for (auto _ : state) {
    if (kv->length() == 0 || kv->length() >= ctx + 255) {
      state.PauseTiming();
      kv = std::make_unique<SequenceKv>(pool.get());
      (void)m.Forward({{kv.get(), prompt, false}}, &logits);
      state.ResumeTiming();
    }
    if (!m.Forward({{kv.get(), {next}, false}}, &logits).ok()) state.SkipWithError("forward");
    next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Decode)->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace spikeserve

BENCHMARK_MAIN();
