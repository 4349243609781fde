// Linear-layer micro-benchmarks at the default model's shapes: FP32 sgemm
// vs INT8 W8A8 (quantize + VNNI matmul + epilogue), M = rows per call.
//   build/bench/linear_bench
#include <random>

#include "benchmark/benchmark.h"
#include "runtime/int8_linear.h"
#include "runtime/linear.h"

namespace spikeserve {
namespace {

Matrix RandomMatrix(int rows, int cols) {
  Matrix w{rows, cols, std::vector<float>(size_t(rows) * cols)};
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 0.05f);
  for (float& x : w.data) x = d(rng);
  return w;
}

// avx2_max_rows: -1 default dispatch, 0 oneDNN only, large: AVX2 kernel
// (on CPUs without VNNI).
void Run(benchmark::State& state, bool int8, int avx2_max_rows = -1) {
  const int m = int(state.range(0)), k = int(state.range(1)),
            n = int(state.range(2));
  const Matrix w = RandomMatrix(n, k);
  std::vector<float> x(size_t(m) * k, 0.5f), y(size_t(m) * n);
  std::unique_ptr<Linear> lin;
  if (int8) {
    Int8Linear::Options o;
    o.avx2_max_rows = avx2_max_rows;
    lin = *Int8Linear::Create(w, o);
    (void)WarmUpInt8Matmul(k, n, m);
  } else {
    lin = std::make_unique<Fp32Linear>(&w);
  }
  const int bounds[2] = {0, m};
  for (auto _ : state) {
    lin->Forward({x.data(), m, bounds}, y.data());
    benchmark::ClobberMemory();
  }
  state.counters["GOPS"] = benchmark::Counter(
      2.0 * m * k * n * state.iterations(), benchmark::Counter::kIsRate);
}

void BM_Fp32(benchmark::State& s) { Run(s, false); }
void BM_Int8(benchmark::State& s) { Run(s, true); }
void BM_Int8OneDnn(benchmark::State& s) { Run(s, true, 0); }
void BM_Int8Avx2(benchmark::State& s) { Run(s, true, 1 << 30); }

#define SHAPES                                                        \
  ArgsProduct({{1, 4, 8, 16, 64, 128, 256, 512}, {576}, {960, 3072}}) \
      ->Args({1, 1536, 576})                                          \
      ->Args({512, 1536, 576})                                        \
      ->UseRealTime()
BENCHMARK(BM_Fp32)->SHAPES;
BENCHMARK(BM_Int8)->SHAPES;
BENCHMARK(BM_Int8OneDnn)->SHAPES;
BENCHMARK(BM_Int8Avx2)->SHAPES;

}  // namespace
}  // namespace spikeserve

BENCHMARK_MAIN();
