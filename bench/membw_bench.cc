// Memory bandwidth of this machine, the ceiling of decode speed: a decode
// step streams every weight once, so tokens/s <= bandwidth / weight bytes.
//   build/bench/membw_bench
// Buffers of 1 GiB (far beyond any cache), split across 1 or 2 OpenMP
// threads. bytes_per_second counts bytes moved: read = bytes read; copy =
// bytes read + bytes written (STREAM's convention).
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "benchmark/benchmark.h"
#include "runtime/linear/cpu_dispatch.h"

namespace {

constexpr size_t kBytes = size_t(1) << 30;

// Sums 64-bit words in 64-byte lanes: integer adds vectorize without
// reassociation limits, and the AVX-512 clone issues one 64-byte load per
// add, so the loop is bound by memory, not by instructions.
SPIKESERVE_CPU_CLONES uint64_t Sum(const uint64_t* a, size_t n) {
  uint64_t lane[8] = {};
  for (size_t i = 0; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) lane[j] += a[i + j];
  }
  uint64_t s = 0;
  for (int j = 0; j < 8; ++j) s += lane[j];
  return s;
}

void BM_Read(benchmark::State& state) {
  const int threads = int(state.range(0));
  std::vector<uint64_t> a(kBytes / 8, 1);
  uint64_t sink = 0;
  for (auto _ : state) {
    uint64_t total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const size_t n = a.size() / size_t(omp_get_num_threads());
      total += Sum(a.data() + n * size_t(omp_get_thread_num()), n);
    }
    sink += total;
  }
  benchmark::DoNotOptimize(sink);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kBytes));
}
BENCHMARK(BM_Read)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime()->Unit(
    benchmark::kMillisecond);

void BM_Copy(benchmark::State& state) {
  const int threads = int(state.range(0));
  std::vector<char> src(kBytes, 1), dst(kBytes, 0);
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    {
      const size_t n = kBytes / size_t(omp_get_num_threads());
      const size_t off = n * size_t(omp_get_thread_num());
      std::memcpy(dst.data() + off, src.data() + off, n);
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * 2 * int64_t(kBytes));
}
BENCHMARK(BM_Copy)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime()->Unit(
    benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
