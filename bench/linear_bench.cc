// Linear-layer micro-benchmarks at the default model's shapes: FP32 (the
// fixed-order kernel, and oneDNN's sgemm it replaced), BF16 weights, and
// INT8 W8A8 (quantize + matmul + epilogue), M = rows per call.
//   build/bench/linear_bench
#include <algorithm>
#include <cmath>
#include <random>

#include "benchmark/benchmark.h"
#include "dnnl.hpp"
#include "runtime/linear/bf16_linear.h"
#include "runtime/linear/int8_gemm_amx.h"
#include "runtime/linear/int8_gemm_packed.h"
#include "runtime/linear/int8_linear.h"
#include "runtime/linear/linear.h"
#include "runtime/linear/w4_clip_search.h"
#include "runtime/linear/w4_gemm.h"
#include "runtime/linear/w4_gemm_amx.h"

namespace spikeserve {
namespace {

Matrix RandomMatrix(int rows, int cols) {
  Matrix w{rows, cols, std::vector<float>(size_t(rows) * cols)};
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 0.05f);
  for (float& x : w.data) x = d(rng);
  return w;
}

enum class Kernel { kFp32, kBf16, kInt8 };

// packed_max_rows (INT8): -1 default dispatch, 0 oneDNN only, large: our
// packed kernel (AVX-512 VNNI, or AVX2 on CPUs without VNNI).
void Run(benchmark::State& state, Kernel kernel, int packed_max_rows = -1) {
  const int m = int(state.range(0)), k = int(state.range(1)),
            n = int(state.range(2));
  const Matrix w = RandomMatrix(n, k);
  std::vector<float> x(size_t(m) * k, 0.5f), y(size_t(m) * n);
  std::unique_ptr<Linear> lin;
  if (kernel == Kernel::kInt8) {
    Int8Linear::Options o;
    o.packed_max_rows = packed_max_rows;
    lin = *Int8Linear::Create(w, o);
    (void)WarmUpInt8Matmul(k, n, m);
  } else if (kernel == Kernel::kBf16) {
    lin = *Bf16Linear::Create(w);
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

void BM_Fp32(benchmark::State& s) { Run(s, Kernel::kFp32); }

// What Fp32Linear ran until 2026-12-07: its result for a row depended on
// the row count (fixed_order_gemm.h).
void BM_Fp32Sgemm(benchmark::State& state) {
  const int m = int(state.range(0)), k = int(state.range(1)),
            n = int(state.range(2));
  const Matrix w = RandomMatrix(n, k);
  std::vector<float> x(size_t(m) * k, 0.5f), y(size_t(m) * n);
  for (auto _ : state) {
    dnnl::sgemm('N', 'T', m, n, k, 1.0f, x.data(), k, w.data.data(), k, 0.0f,
                y.data(), n);
    benchmark::ClobberMemory();
  }
  state.counters["GOPS"] = benchmark::Counter(
      2.0 * m * k * n * state.iterations(), benchmark::Counter::kIsRate);
}

void BM_Bf16(benchmark::State& s) { Run(s, Kernel::kBf16); }
void BM_Int8(benchmark::State& s) { Run(s, Kernel::kInt8); }
void BM_Int8OneDnn(benchmark::State& s) { Run(s, Kernel::kInt8, 0); }
void BM_Int8Packed(benchmark::State& s) { Run(s, Kernel::kInt8, 1 << 30); }

#define SHAPES                                                           \
  ArgsProduct({{1, 2, 4, 8, 16, 64, 128, 256, 512}, {576}, {960, 3072}}) \
      ->Args({1, 1536, 576})                                             \
      ->Args({512, 1536, 576})                                           \
      ->UseRealTime()
BENCHMARK(BM_Fp32)->SHAPES;
BENCHMARK(BM_Fp32Sgemm)->SHAPES;
BENCHMARK(BM_Bf16)->SHAPES;
BENCHMARK(BM_Int8)->SHAPES;
BENCHMARK(BM_Int8OneDnn)->SHAPES;
BENCHMARK(BM_Int8Packed)->SHAPES;

// The packed kernel of each ISA on weights that come from DRAM, as in a decode
// step of a real model (its 30 layers do not fit in the caches): it walks
// through distinct [N][K] matrices spanning 128 MiB. bytes_per_second = weight
// bytes read, comparable with membw_bench.
void KernelCold(benchmark::State& state, Int8KernelIsa isa) {
  if (!Int8KernelSupported(isa)) {
    state.SkipWithError("kernel not supported on this CPU");
    return;
  }
  const int m = int(state.range(0)), k = int(state.range(1)),
            n = int(state.range(2));
  const size_t per = size_t(n) * k;
  const size_t count = std::max<size_t>(2, (size_t(128) << 20) / per);
  std::vector<int8_t> w(per * count);
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> d(-127, 127);
  for (int8_t& v : w) v = int8_t(d(rng));
  std::vector<Int8PackedWeights> packed;
  for (size_t i = 0; i < count; ++i) {
    packed.push_back(PackInt8Weights(w.data() + per * i, n, k, isa));
  }
  std::vector<int8_t>().swap(w);
  std::vector<int8_t> x(size_t(m) * k, 3);
  std::vector<int32_t> acc(size_t(m) * n);
  size_t i = 0;
  for (auto _ : state) {
    Int8GemmPacked(x.data(), m, packed[i], acc.data());
    benchmark::ClobberMemory();
    if (++i == count) i = 0;
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(per));
}
void BM_Avx2KernelCold(benchmark::State& s) {
  KernelCold(s, Int8KernelIsa::kAvx2);
}
void BM_VnniKernelCold(benchmark::State& s) {
  KernelCold(s, Int8KernelIsa::kAvx512Vnni);
}
#define COLD_SHAPES           \
  Args({1, 576, 3072})        \
      ->Args({1, 576, 960})   \
      ->Args({1, 1536, 576})  \
      ->Args({4, 576, 3072})  \
      ->Args({1, 2048, 5632}) \
      ->UseRealTime()
BENCHMARK(BM_Avx2KernelCold)->COLD_SHAPES;
BENCHMARK(BM_VnniKernelCold)->COLD_SHAPES;

// The W4A8 kernels the same way (group 128, symmetric: 4.125 bits per
// weight). bytes_per_second = packed bytes read (scales included);
// weights_per_second compares with the INT8 kernels above at equal shapes.
// hot: one matrix, read again every iteration (from L2 at these shapes):
// the kernel's arithmetic rate without DRAM, its ceiling per core.
// group 32 with minimums is the GPTQ plans' form (scripts/make_gptq_plans.sh):
// 5 bits per weight, and the kernel's per-group epilogue every 32 k.
// At K = 576 group 128 does not divide K: the kernels then compute the
// first 4 groups (512 k) while weights_per_second counts 576; such rows
// compare kernels with each other, not with a model (whose 576-wide sites
// take group 64, W4A8Linear::GroupFor).
// amx: batches of every size on AMX tiles (VNNI packing; W4A8Linear does
// so from kW4AmxMinRows rows).
void W4Kernel(benchmark::State& state, W4KernelIsa isa, bool hot,
              int group = 128, bool has_min = false, bool amx = false) {
  if (!W4KernelSupported(isa) || (amx && !W4AmxSupported())) {
    state.SkipWithError("kernel not supported on this CPU");
    return;
  }
  const int m = int(state.range(0)), k = int(state.range(1)),
            n = int(state.range(2));
  W4Plain plain;
  plain.n = n;
  plain.k = k;
  plain.group = group;
  plain.has_min = has_min;
  plain.u.resize(size_t(n) * k);
  plain.scale.resize(size_t(n) * (k / group));
  if (has_min) plain.min.assign(plain.scale.size(), 0xA000);  // -2^-7
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> du(0, 15);
  for (uint8_t& v : plain.u) v = uint8_t(du(rng));
  for (uint16_t& v : plain.scale) v = 0x2000;  // 2^-7
  W4PackedWeights one = PackW4Weights(plain, isa);
  if (amx) one.amx_min_rows = 1;
  const size_t count =
      hot ? 1 : std::max<size_t>(2, (size_t(128) << 20) / one.bytes());
  std::vector<W4PackedWeights> packed(count, one);
  std::vector<int8_t> x(size_t(m) * k, 3);
  std::vector<int32_t> sums(size_t(m) * (k / group));
  W4GroupSums(x.data(), m, k, group, sums.data());
  std::vector<float> row_scale(m, 0.01f), y(size_t(m) * n);
  size_t i = 0;
  for (auto _ : state) {
    W4Gemm(x.data(), sums.data(), m, packed[i], row_scale.data(), y.data());
    benchmark::ClobberMemory();
    if (++i == count) i = 0;
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(one.bytes()));
  state.counters["weights_per_second"] = benchmark::Counter(
      double(n) * k * state.iterations(), benchmark::Counter::kIsRate);
}
void BM_W4Avx2KernelCold(benchmark::State& s) {
  W4Kernel(s, W4KernelIsa::kAvx2, false);
}
void BM_W4VnniKernelCold(benchmark::State& s) {
  W4Kernel(s, W4KernelIsa::kAvx512Vnni, false);
}
BENCHMARK(BM_W4Avx2KernelCold)->COLD_SHAPES;
BENCHMARK(BM_W4VnniKernelCold)->COLD_SHAPES;
void BM_W4Avx2KernelHot(benchmark::State& s) {
  W4Kernel(s, W4KernelIsa::kAvx2, true);
}
void BM_W4VnniKernelHot(benchmark::State& s) {
  W4Kernel(s, W4KernelIsa::kAvx512Vnni, true);
}
#define HOT_SHAPES             \
  Args({1, 576, 960})          \
      ->Args({1, 1536, 576})   \
      ->Args({64, 576, 960})   \
      ->Args({512, 576, 960})  \
      ->Args({512, 576, 3072}) \
      ->Args({512, 1536, 576}) \
      ->UseRealTime()
BENCHMARK(BM_W4Avx2KernelHot)->HOT_SHAPES;
void BM_W4Avx2KernelHotG32Min(benchmark::State& s) {
  W4Kernel(s, W4KernelIsa::kAvx2, true, 32, true);
}
BENCHMARK(BM_W4Avx2KernelHotG32Min)->HOT_SHAPES;
BENCHMARK(BM_W4VnniKernelHot)->HOT_SHAPES;
void BM_W4AmxKernelHot(benchmark::State& s) {
  W4Kernel(s, W4KernelIsa::kAvx512Vnni, true, 128, false, true);
}
// The rows from which AMX pays (kW4AmxMinRows): VNNI and AMX alike.
#define THRESHOLD_SHAPES       \
  Args({8, 576, 960})          \
      ->Args({16, 576, 960})   \
      ->Args({24, 576, 960})   \
      ->Args({32, 576, 960})   \
      ->Args({48, 576, 960})   \
      ->Args({16, 2048, 2048}) \
      ->Args({32, 2048, 2048}) \
      ->UseRealTime()
BENCHMARK(BM_W4AmxKernelHot)->HOT_SHAPES->Args({512, 2048, 5632});
BENCHMARK(BM_W4AmxKernelHot)->THRESHOLD_SHAPES;
BENCHMARK(BM_W4VnniKernelHot)->THRESHOLD_SHAPES;

// The VNNI INT8 kernel with and without AMX tiles for its batches
// (kInt8AmxMinRows), one matrix read again every iteration.
void Int8KernelHot(benchmark::State& state, bool amx) {
  const int m = int(state.range(0)), k = int(state.range(1)),
            n = int(state.range(2));
  if (!Int8KernelSupported(Int8KernelIsa::kAvx512Vnni) ||
      (amx && !Int8AmxSupported(k))) {
    state.SkipWithError("kernel not supported on this CPU");
    return;
  }
  std::vector<int8_t> w(size_t(n) * k, 3), x(size_t(m) * k, -5);
  Int8PackedWeights packed =
      PackInt8Weights(w.data(), n, k, Int8KernelIsa::kAvx512Vnni);
  packed.amx_min_rows = amx ? 1 : 0;
  std::vector<float> row_scale(m, 0.01f), y(size_t(m) * n);
  for (auto _ : state) {
    Int8GemmPackedDequant(x.data(), m, packed, row_scale.data(), y.data());
    benchmark::ClobberMemory();
  }
  state.counters["GOPS"] = benchmark::Counter(
      2.0 * m * k * n * state.iterations(), benchmark::Counter::kIsRate);
}
void BM_Int8AmxKernelHot(benchmark::State& s) { Int8KernelHot(s, true); }
void BM_Int8VnniKernelHot(benchmark::State& s) { Int8KernelHot(s, false); }
BENCHMARK(BM_Int8AmxKernelHot)->THRESHOLD_SHAPES;
BENCHMARK(BM_Int8VnniKernelHot)->THRESHOLD_SHAPES;
void BM_W4AmxKernelHotG32Min(benchmark::State& s) {
  W4Kernel(s, W4KernelIsa::kAvx512Vnni, true, 32, true, true);
}
BENCHMARK(BM_W4AmxKernelHotG32Min)->HOT_SHAPES;
void BM_W4VnniKernelHotG32Min(benchmark::State& s) {
  W4Kernel(s, W4KernelIsa::kAvx512Vnni, true, 32, true);
}
BENCHMARK(BM_W4VnniKernelHotG32Min)->HOT_SHAPES;

// Load-time cost of W4 quantization of one 576-wide row block (group 32):
// round-to-nearest from the extremes (arg 0) against the importance-
// weighted clipping search (arg 1), symmetric (range(1) 0) or with a
// minimum (1). items_per_second = weights quantized.
void BM_W4Quantize(benchmark::State& s) {
  const bool weighted = s.range(0) != 0, with_min = s.range(1) != 0;
  const int k = 576, rows = 64;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> w(size_t(rows) * k), h(k);
  for (float& v : w) v = nd(rng);
  for (float& v : h) v = std::exp(nd(rng));
  std::vector<uint8_t> u(k);
  std::vector<uint16_t> scale(k / 32), mn(k / 32);
  for (auto _ : s) {
    for (int r = 0; r < rows; ++r) {
      const float* row = &w[size_t(r) * k];
      if (weighted && with_min) {
        QuantizeW4RowMinWeighted(row, h.data(), k, 32, u.data(), scale.data(),
                                 mn.data());
      } else if (weighted) {
        QuantizeW4RowWeighted(row, h.data(), k, 32, u.data(), scale.data());
      } else if (with_min) {
        QuantizeW4RowMin(row, k, 32, u.data(), scale.data(), mn.data());
      } else {
        QuantizeW4Row(row, k, 32, u.data(), scale.data());
      }
      benchmark::DoNotOptimize(u.data());
    }
  }
  s.SetItemsProcessed(int64_t(s.iterations()) * rows * k);
}
BENCHMARK(BM_W4Quantize)->ArgsProduct({{0, 1}, {0, 1}});

}  // namespace
}  // namespace spikeserve

BENCHMARK_MAIN();
