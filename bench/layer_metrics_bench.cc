// Cost of the per-layer metrics per engine step: what LayerMetrics adds to
// a forward pass of SmolLM2-135M's shape (30 layers x 4 sites + 2 parts),
// with `rows` tokens in the batch. Compare with the step time of
// model_bench (decode ~13 ms/token on 2 cores) for the overhead.
//
//   build/bench/layer_metrics_bench
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "prometheus/registry.h"
#include "server/layer_metrics.h"

namespace spikeserve {
namespace {

void BM_LayerMetricsStep(benchmark::State& state) {
  const int rows = int(state.range(0));
  const bool on = state.range(1) != 0;
  constexpr int kLayers = 30;
  prometheus::Registry registry;
  LayerMetricsOptions o;
  o.n_layers = kLayers;
  o.every = on ? 1 : 0;
  LayerMetrics metrics(&registry, o);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(0.5f, 8.f);
  std::vector<float> absmax(rows);
  for (float& a : absmax) a = u(rng);
  const std::vector<int> bounds = {0, rows};
  for (auto _ : state) {
    for (int l = 0; l < kLayers; ++l) {
      for (int s = 0; s < kNumSites; ++s) {
        metrics.OnSiteInput(l, Site(s), nullptr, rows, 576, absmax, bounds);
      }
      metrics.OnLayerPart(l, LayerPart::kAttention, 1e-4);
      metrics.OnLayerPart(l, LayerPart::kFfn, 1e-4);
    }
  }
  state.SetLabel(on ? "per-layer on" : "per-layer off");
}
BENCHMARK(BM_LayerMetricsStep)
    ->ArgsProduct({{1, 8, 512}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace spikeserve

BENCHMARK_MAIN();
