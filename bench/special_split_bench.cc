// Splitting 1 MiB of text at 256 Llama-3-like special tokens
// (runtime/text/special_split.h): the one-pass form against the literal one,
// on text made of the specials' first bytes (the literal form's worst case)
// and on prose.
//
//   build/bench/special_split_bench
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "runtime/text/special_split.h"

namespace spikeserve {
namespace {

const SpecialSplitter& Llama3Specials() {
  static const SpecialSplitter* s = [] {
    std::vector<SpecialToken> specials;
    for (int i = 0; i < 256; ++i) {
      specials.push_back(
          {"<|reserved_special_token_" + std::to_string(i) + "|>", 128000 + i,
           false, true});
    }
    return new SpecialSplitter(std::move(specials));
  }();
  return *s;
}

// 0: prose; 1: runs of the specials' first two bytes; 2: their common
// prefix after a stray one.
std::string Text(int kind) {
  const std::string unit =
      kind == 1   ? "<|"
      : kind == 2 ? "<|<|reserved_special_token_"
                  : "The quick brown fox jumps over the lazy dog. ";
  std::string t;
  while (t.size() < (1 << 20)) t += unit;
  return t;
}

void BM_Split(benchmark::State& state) {
  const std::string text = Text(int(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(Llama3Specials().Split(text, true));
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
void BM_SplitSequential(benchmark::State& state) {
  const std::string text = Text(int(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(Llama3Specials().SplitSequential(text, true));
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_Split)->DenseRange(0, 2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SplitSequential)->DenseRange(0, 2)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace spikeserve

BENCHMARK_MAIN();
