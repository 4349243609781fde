#include "server/layer_metrics.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

namespace spikeserve {
namespace {

// Token absmax: powers of two from 1/4 to 4096 (a spike is 10-1000x the
// typical 0.5-5 of a normalized input).
prometheus::Histogram::BucketBoundaries AbsmaxBuckets() {
  prometheus::Histogram::BucketBoundaries b;
  for (double v = 0.25; v <= 4096; v *= 2) b.push_back(v);
  return b;
}

}  // namespace

LayerMetrics::LayerMetrics(prometheus::Registry* registry,
                           LayerMetricsOptions o)
    : n_layers_(o.n_layers), every_(o.every), spike_factor_(o.spike_factor) {
  auto& absmax = prometheus::BuildHistogram()
                     .Name("spikeserve_activation_token_absmax")
                     .Help(
                         "Token absmax max_j |x[t,j]| of each linear "
                         "module's input, per layer and site")
                     .Register(*registry);
  auto& ratio = prometheus::BuildGauge()
                    .Name("spikeserve_activation_spike_ratio")
                    .Help(
                        "Spike ratio max_t a_t / median_t a_t of the last "
                        "recorded step's rows, per layer and site")
                    .Register(*registry);
  auto& calibrated = prometheus::BuildGauge()
                         .Name("spikeserve_activation_calibrated_spike_ratio")
                         .Help(
                             "Spike ratio of each site measured by the "
                             "quant plan's calibration")
                         .Register(*registry);
  auto& spikes = prometheus::BuildCounter()
                     .Name("spikeserve_activation_spike_tokens_total")
                     .Help(
                         "Tokens whose absmax exceeded spike_factor x the "
                         "calibrated median (or the step's median)")
                     .Register(*registry);
  auto& fallbacks = prometheus::BuildCounter()
                        .Name("spikeserve_quantization_fallback_tokens_total")
                        .Help(
                            "Rows the runtime spike guard computed in FP32 "
                            "instead of INT8")
                        .Register(*registry);
  auto& forward = prometheus::BuildHistogram()
                      .Name("spikeserve_layer_forward_seconds")
                      .Help(
                          "Wall time of one half of a layer over a whole "
                          "batch (part: attention or ffn)")
                      .Register(*registry);
  batch_tokens_ =
      &prometheus::BuildHistogram()
           .Name("spikeserve_batch_tokens")
           .Help("Tokens (rows) in each engine step's batch")
           .Register(*registry)
           .Add({}, prometheus::Histogram::BucketBoundaries{
                        1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048});
  // Per-part latency: 50 us (one decode token of a small layer) to 0.5 s
  // (a 2048-token prefill chunk of a large one).
  const prometheus::Histogram::BucketBoundaries part_buckets = {
      0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002,
      0.005,   0.01,   0.02,   0.05,   0.1,   0.5};
  sites_.resize(n_layers_);
  parts_.resize(n_layers_);
  for (int l = 0; l < n_layers_; ++l) {
    const std::string layer = std::to_string(l);
    for (int s = 0; s < kNumSites; ++s) {
      const prometheus::Labels labels = {{"layer", layer},
                                         {"site", SiteName(Site(s))}};
      SiteSeries& ss = sites_[l][s];
      ss.absmax = &absmax.Add(labels, AbsmaxBuckets());
      ss.spike_ratio = &ratio.Add(labels);
      ss.spike_tokens = &spikes.Add(labels);
      ss.fallback_tokens = &fallbacks.Add(labels);
      auto it = o.calibrated_median.find({l, Site(s)});
      if (it != o.calibrated_median.end()) ss.reference = it->second;
      auto cr = o.calibrated_ratio.find({l, Site(s)});
      if (cr != o.calibrated_ratio.end()) {
        calibrated.Add(labels).Set(cr->second);
      }
    }
    for (int p = 0; p < 2; ++p) {
      parts_[l][p] = &forward.Add(
          {{"layer", layer}, {"part", LayerPartName(LayerPart(p))}},
          part_buckets);
    }
  }
}

void LayerMetrics::OnSiteInput(int layer, Site site, const float*, int m, int,
                               absl::Span<const float> row_absmax,
                               absl::Span<const int>) {
  if (!Valid(layer) || m <= 0 || int(row_absmax.size()) < m) return;
  if (layer == 0 && site == Site::kQkv) {  // the first site of a step
    batch_tokens_->Observe(m);
    sampled_ = every_ > 0 && step_ % every_ == 0;
    ++step_;
  }
  if (every_ <= 0) return;
  SiteSeries& ss = sites_[layer][int(site)];
  float threshold = spike_factor_ * ss.reference;
  if (sampled_ || ss.reference <= 0) {
    // Finite rows only: an infinite or NaN input (a request the engine
    // then fails) would leave the histogram's sum NaN or infinite for
    // good; it is counted as a spike below.
    scratch_.clear();
    for (int r = 0; r < m; ++r) {
      if (std::isfinite(row_absmax[r])) scratch_.push_back(row_absmax[r]);
    }
    const size_t n = scratch_.size();
    if (n > 0) {
      float max = 0;
      for (float a : scratch_) {
        if (sampled_) ss.absmax->Observe(a);
        max = std::max(max, a);
      }
      std::nth_element(scratch_.begin(), scratch_.begin() + n / 2,
                       scratch_.end());
      const float median = scratch_[n / 2];
      if (ss.reference <= 0) threshold = spike_factor_ * median;
      if (sampled_ && median > 0) ss.spike_ratio->Set(max / median);
    }
  }
  // Spikes are counted on every step, sampled or not: they are rare and
  // come in prefill steps, which sampling would mostly skip. A non-finite
  // row counts as one.
  int spikes = 0;
  for (int r = 0; r < m; ++r) spikes += !(row_absmax[r] <= threshold);
  if (spikes > 0) ss.spike_tokens->Increment(spikes);
}

void SetSpikeReferences(const v1::QuantPlan& plan, LayerMetricsOptions* o) {
  // The plain model's statistics describe the served inputs only when
  // nothing comes before the sites: no prefix, smoothing or rotation.
  bool plain_is_served =
      plan.qfep().token_ids_size() == 0 && !plan.smoothing().enabled() &&
      !plan.rotation().down_hadamard() && !plan.rotation().norm_hadamard();
  for (const v1::SiteStats& st : plan.sites()) {
    plain_is_served = plain_is_served && st.smooth_scales_size() == 0;
  }
  for (const v1::SiteStats& st : plan.sites()) {
    if (st.layer() < 0 || st.layer() >= o->n_layers) continue;
    const std::optional<Site> site = ParseSite(st.site());
    if (!site.has_value()) continue;
    const SiteKey key{st.layer(), *site};
    double median = st.served_median_absmax(), ratio = st.served_spike_ratio();
    if (median <= 0 && plain_is_served) median = st.median_absmax();
    if (ratio <= 0 && plain_is_served) ratio = st.spike_ratio();
    if (median > 0) o->calibrated_median[key] = float(median);
    if (ratio > 0) o->calibrated_ratio[key] = float(ratio);
  }
}

void LayerMetrics::OnGuardFallback(int layer, Site site, int rows) {
  if (!Valid(layer) || rows <= 0) return;
  sites_[layer][int(site)].fallback_tokens->Increment(rows);
}

void LayerMetrics::OnLayerPart(int layer, LayerPart part, double seconds) {
  if (!Valid(layer) || !sampled_) return;
  parts_[layer][int(part)]->Observe(seconds);
}

}  // namespace spikeserve
