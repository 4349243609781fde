// End-to-end forward benchmarks on a real model (default: SmolLM2-135M):
// prefill of a 512-token prompt and single-sequence decode.
//   build/bench/model_bench [--benchmark_filter=...]   (SPIKESERVE_MODEL=path)
// Thread count follows OMP_NUM_THREADS (oneDNN's OpenMP runtime).
#include <cstdlib>
#include <memory>
#include <random>

#include "benchmark/benchmark.h"
#include "runtime/model/model.h"
#include "runtime/model/shared_prefix.h"

namespace spikeserve {
namespace {

// The schemes benchmarked: FP32, W8A8 per-tensor dynamic, and W8A8 with
// QFeM of two down sites (the typical plan: spikes sit in a few down_proj
// inputs, method.md §1).
// kW8A8Rot adds the online Hadamard transforms before every down_proj and
// after every RMSNorm (the default plan's smooth-then-rotate; smoothing
// itself is folded into the weights and costs nothing at run time).
// kServe: kW8A8Rot with the lm_head the server picks by default
// (FastestLmHead), for the serving-shaped batch benchmark.
enum Scheme { kFp32 = 0, kW8A8 = 1, kW8A8Qfem = 2, kW8A8Rot = 3, kServe = 4 };

const Model& Get(int scheme) {
  static std::shared_ptr<GgufFile> file = [] {
    const char* env = std::getenv("SPIKESERVE_MODEL");
    auto f = GgufFile::Open(env ? env : SPIKESERVE_DEFAULT_MODEL);
    if (!f.ok()) {
      std::fprintf(stderr, "%s\n", f.status().ToString().c_str());
      std::exit(1);
    }
    return *std::move(f);
  }();
  static std::unique_ptr<Model> models[5];
  if (!models[scheme]) {
    QuantOptions q;
    q.w8a8 = scheme != kFp32;
    q.down_hadamard = scheme == kW8A8Rot || scheme == kServe;
    q.norm_hadamard = q.down_hadamard;
    if (scheme == kServe) q.lm_head = FastestLmHead();
    if (scheme == kW8A8Qfem) {
      q.fp32_sites = {{1, Site::kDown},
                      {ReadModelConfig(*file)->n_layers - 1, Site::kDown}};
    }
    auto m = Model::Load(file, q);
    if (!m.ok()) {
      std::fprintf(stderr, "%s\n", m.status().ToString().c_str());
      std::exit(1);
    }
    models[scheme] = *std::move(m);
  }
  return *models[scheme];
}

std::vector<int32_t> Tokens(int n, int vocab) {
  std::mt19937 rng(1);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = int32_t(rng() % vocab);
  return t;
}

void BM_Prefill(benchmark::State& state) {
  const Model& m = Get(int(state.range(1)));
  const int n = int(state.range(0));
  const auto tokens = Tokens(n, m.config().vocab_size);
  auto pool = *m.NewKvPool(n / 16 + 2);
  std::vector<float> logits;
  for (auto _ : state) {
    SequenceKv kv(pool.get());
    if (!m.Forward({{&kv, tokens, false}}, &logits).ok())
      state.SkipWithError("forward");
  }
  state.counters["tokens_per_s"] = benchmark::Counter(
      double(n) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Prefill)
    ->ArgsProduct({{512}, {kFp32, kW8A8, kW8A8Qfem, kW8A8Rot}})
    ->ArgNames({"tokens", "scheme"})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(4.0)
    ->UseRealTime();

// Decode one token per iteration after a `range(0)`-token context; the
// context is rebuilt (untimed) when it would reach the pool's end.
void BM_Decode(benchmark::State& state) {
  const Model& m = Get(int(state.range(1)));
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
    if (!m.Forward({{kv.get(), {next}, false}}, &logits).ok())
      state.SkipWithError("forward");
    next = int32_t(std::max_element(logits.begin(), logits.end()) -
                   logits.begin());
  }
  state.counters["tokens_per_s"] = benchmark::Counter(
      double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Decode)
    ->ArgsProduct({{128}, {kFp32, kW8A8, kW8A8Qfem, kW8A8Rot}})
    ->ArgNames({"context", "scheme"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// One decode step of `range(0)` sequences at once (continuous batching),
// each after a 128-token context; tokens_per_s counts every sequence's
// token. The contexts are rebuilt (untimed) before they outgrow the pool.
void BM_DecodeBatch(benchmark::State& state) {
  const Model& m = Get(int(state.range(1)));
  const int seqs = int(state.range(0)), ctx = 128;
  const auto prompt = Tokens(ctx, m.config().vocab_size);
  auto pool = *m.NewKvPool(seqs * ((ctx + 256) / 16 + 2));
  std::vector<std::unique_ptr<SequenceKv>> kvs(seqs);
  std::vector<float> logits;
  std::vector<int32_t> next(seqs, 1);
  for (auto _ : state) {
    if (!kvs[0] || kvs[0]->length() >= ctx + 255) {
      state.PauseTiming();
      for (auto& kv : kvs) {
        kv = std::make_unique<SequenceKv>(pool.get());
        (void)m.Forward({{kv.get(), prompt, false}}, &logits);
      }
      state.ResumeTiming();
    }
    std::vector<BatchEntry> batch;
    for (int i = 0; i < seqs; ++i) {
      batch.push_back({kvs[i].get(), absl::MakeConstSpan(&next[i], 1), false});
    }
    if (!m.Forward(batch, &logits).ok()) state.SkipWithError("forward");
    const int v = m.config().vocab_size;
    for (int i = 0; i < seqs; ++i) {
      const float* row = logits.data() + size_t(i) * v;
      next[i] = int32_t(std::max_element(row, row + v) - row);
    }
  }
  state.counters["tokens_per_s"] = benchmark::Counter(
      double(seqs) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DecodeBatch)
    ->ArgsProduct({{1, 8}, {kServe}})
    ->ArgNames({"sequences", "scheme"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// QFeP's cost: decode after a 3-token shared FP32 prefix is the same work
// as decode at context + 3; the prefix itself is computed once at load.
// Reported here as that one-time cost.
void BM_QfepPrefixOnce(benchmark::State& state) {
  const Model& m = Get(kW8A8);
  auto pool = *m.NewKvPool(4);
  const std::vector<int32_t> prefix = {1, 198, 30};
  for (auto _ : state) {
    auto p = SharedPrefix::Compute(m, pool.get(), prefix);
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_QfepPrefixOnce)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace spikeserve

BENCHMARK_MAIN();
