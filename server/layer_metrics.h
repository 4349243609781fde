// Per-layer metrics of the model, fed by the runtime's ForwardObserver on
// the engine thread (design.md, metrics contract):
//   spikeserve_layer_forward_seconds{layer,part}          histogram
//   spikeserve_activation_token_absmax{layer,site}        histogram
//   spikeserve_activation_spike_ratio{layer,site}         gauge (last step)
//   spikeserve_activation_spike_tokens_total{layer,site}  counter
//   spikeserve_quantization_fallback_tokens_total{layer,site} counter
//   spikeserve_batch_tokens                               histogram (per step)
// Labels come from bounded sets only (layer 0..L-1, the four sites, the two
// parts). Series are created once here; the hot path only updates handles.
//
// Sampling: the histograms and the spike-ratio gauge are recorded every
// `every`-th step; spike tokens, batch_tokens and fallbacks are counted on
// every step (`every` = 0 switches the per-layer series off, fallbacks and
// batch_tokens excepted). The QFeP prefix is
// computed once before the engine starts and never reaches this observer.
//
// Thread-safety: the On* methods are called by the engine thread only;
// prometheus-cpp handles are safe to scrape concurrently.
#ifndef SPIKESERVE_SERVER_LAYER_METRICS_H_
#define SPIKESERVE_SERVER_LAYER_METRICS_H_

#include <array>
#include <map>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "runtime/model/forward_observer.h"
#include "runtime/model/site.h"
#include "spikeserve/v1/quant_plan.pb.h"

namespace spikeserve {

struct LayerMetricsOptions {
  int n_layers = 0;
  int every = 1;              // record per-layer series every Nth step
  float spike_factor = 50.f;  // spike token: absmax > factor x reference
  // Reference median token absmax per site from the quant plan's
  // calibration; sites without one use the median of the same call (which
  // is the token itself for a one-token decode step, so never a spike).
  std::map<SiteKey, float> calibrated_median;
  // The plan's calibrated spike ratio per site, exported as
  // spikeserve_activation_calibrated_spike_ratio{layer,site} so that alerts
  // can compare the live ratio with it.
  std::map<SiteKey, float> calibrated_ratio;
};

// Fills o->calibrated_median and o->calibrated_ratio (o->n_layers set) from
// the plan's statistics of the served inputs (served_median_absmax,
// served_spike_ratio). A plan written before those fields has only the
// plain FP32 model's, which describe the served inputs only when the plan
// has no QFeP prefix, smoothing or rotation: with any of them (the
// smoothed, rotated inputs after the prefix are orders of magnitude
// smaller) its sites get no reference and are judged per call.
void SetSpikeReferences(const v1::QuantPlan& plan, LayerMetricsOptions* o);

class LayerMetrics final : public ForwardObserver {
 public:
  LayerMetrics(prometheus::Registry* registry, LayerMetricsOptions options);

  void OnSiteInput(int layer, Site site, const float* x, int m, int width,
                   absl::Span<const float> row_absmax,
                   absl::Span<const int> seq_bounds) override;
  void OnGuardFallback(int layer, Site site, int rows) override;
  void OnLayerPart(int layer, LayerPart part, double seconds) override;

 private:
  struct SiteSeries {
    prometheus::Histogram* absmax = nullptr;
    prometheus::Gauge* spike_ratio = nullptr;
    prometheus::Counter* spike_tokens = nullptr;
    prometheus::Counter* fallback_tokens = nullptr;
    float reference = 0;  // calibrated median absmax, 0 = per call
  };
  bool Valid(int layer) const { return layer >= 0 && layer < n_layers_; }

  const int n_layers_;
  const int every_;
  const float spike_factor_;
  std::vector<std::array<SiteSeries, kNumSites>> sites_;      // [layer][site]
  std::vector<std::array<prometheus::Histogram*, 2>> parts_;  // [layer][part]
  prometheus::Histogram* batch_tokens_ = nullptr;
  long long step_ = 0;
  bool sampled_ = false;        // this step records per-layer series
  std::vector<float> scratch_;  // median selection
};

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_LAYER_METRICS_H_
