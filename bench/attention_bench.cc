// Causal attention of a prompt over the paged KV cache (FP32), as a
// prefill runs it: one layer, every head, the rows in chunks of `chunk`
// (the prompt's earlier chunks already cached). Counter GMACs: the
// multiply-adds of QK^T and PV (the causal half) per second.
//   build/bench/attention_bench
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "runtime/model/attention.h"

namespace spikeserve {
namespace {

// Args: heads, kv heads, head_dim, prompt rows, chunk rows.
void BM_CausalPrefill(benchmark::State& state) {
  ModelConfig c;
  c.n_layers = 1;
  c.n_heads = int(state.range(0));
  c.n_kv_heads = int(state.range(1));
  c.head_dim = int(state.range(2));
  const int rows = int(state.range(3)), chunk = int(state.range(4));
  auto pool = KvPool::Create({.n_layers = 1,
                              .kv_dim = c.kv_dim(),
                              .block_tokens = 16,
                              .num_blocks = rows / 16 + 2});
  SequenceKv kv(pool->get());
  if (!kv.Reserve(rows).ok()) state.SkipWithError("reserve");
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0, 1);
  std::vector<float> row(c.kv_dim());
  for (int p = 0; p < rows; ++p) {
    for (float& x : row) x = d(rng);
    kv.WriteK(0, p, row.data());
    for (float& x : row) x = d(rng);
    kv.WriteV(0, p, row.data());
  }
  std::vector<float> q(size_t(rows) * c.q_dim()), out(q.size());
  for (float& x : q) x = d(rng);
  AttentionScratch scratch;
  for (auto _ : state) {
    for (int r = 0; r < rows; r += chunk) {
      const int n = std::min(chunk, rows - r);
      CausalAttention(c, kv, 0, q.data() + size_t(r) * c.q_dim(), n, r,
                      out.data() + size_t(r) * c.q_dim(), &scratch);
    }
    benchmark::ClobberMemory();
  }
  const double macs =
      2.0 * c.n_heads * c.head_dim * double(rows) * (rows + 1) / 2;
  state.counters["GMACs"] = benchmark::Counter(macs * state.iterations() / 1e9,
                                               benchmark::Counter::kIsRate);
}

BENCHMARK(BM_CausalPrefill)
    ->Args({9, 3, 64, 512, 512})  // SmolLM2-135M
    ->Args({9, 3, 64, 512, 64})
    ->Args({32, 4, 64, 512, 512})   // TinyLlama-1.1B
    ->Args({32, 8, 128, 512, 512})  // Llama-3.1-8B
    // Decode: one row at a time over 1 .. 512 cached positions.
    ->Args({9, 3, 64, 512, 1})
    ->Args({32, 8, 128, 512, 1})
    ->UseRealTime();

}  // namespace
}  // namespace spikeserve

BENCHMARK_MAIN();
