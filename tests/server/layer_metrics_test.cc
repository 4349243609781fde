// The per-layer spike series: which reference a plan gives each site, and
// spike tokens counted on every step whatever the sampling.
#include "server/layer_metrics.h"

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "prometheus/registry.h"

namespace spikeserve {
namespace {

// The value of `family`{layer="L",site="S"} in the registry: a counter's or
// gauge's value, a histogram's sample count (-1 when absent).
double Value(prometheus::Registry& registry, const std::string& family,
             int layer, const std::string& site) {
  for (const prometheus::MetricFamily& f : registry.Collect()) {
    if (f.name != family) continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      std::string l, s;
      for (const prometheus::ClientMetric::Label& label : m.label) {
        if (label.name == "layer") l = label.value;
        if (label.name == "site") s = label.value;
      }
      if (l != std::to_string(layer) || s != site) continue;
      if (f.type == prometheus::MetricType::Histogram) {
        return double(m.histogram.sample_count);
      }
      return f.type == prometheus::MetricType::Counter ? m.counter.value
                                                       : m.gauge.value;
    }
  }
  return -1;
}

// One engine step: layer 0's qkv (which starts a step) with quiet rows, then
// layer 1's down with `down_absmax` as its rows' absmax.
void Step(LayerMetrics& lm, const std::vector<float>& down_absmax) {
  const int m = int(down_absmax.size());
  const std::vector<float> quiet(m, 1.f);
  const std::vector<float> x(size_t(m) * 4, 0.f);
  const std::vector<int> bounds = {0, m};
  lm.OnSiteInput(0, Site::kQkv, x.data(), m, 4, quiet, bounds);
  lm.OnSiteInput(1, Site::kDown, x.data(), m, 4, down_absmax, bounds);
}

constexpr char kSpikes[] = "spikeserve_activation_spike_tokens_total";

// Two layers, a spike at 50x the reference: 1.0 for 1.down when
// `calibrated`, else each step's median.
LayerMetricsOptions TwoLayers(int every, bool calibrated) {
  LayerMetricsOptions o;
  o.n_layers = 2;
  o.every = every;
  o.spike_factor = 50;
  if (calibrated) o.calibrated_median[{1, Site::kDown}] = 1.f;
  return o;
}

// With --layer_metrics_every 4 only one step in four records the
// histograms; the spike counter still sees the spike of every step (it
// saw one in four, and a prefill's spike only if its step was sampled).
TEST(LayerMetricsTest, SpikesAreCountedOnUnsampledSteps) {
  for (bool calibrated : {true, false}) {
    prometheus::Registry registry;
    LayerMetrics lm(&registry, TwoLayers(4, calibrated));
    // Row 2 is 100x the median (and the calibrated reference) of 1.
    for (int step = 0; step < 4; ++step) Step(lm, {1.f, 1.f, 100.f});
    EXPECT_EQ(Value(registry, kSpikes, 1, "down"), 4) << calibrated;
    EXPECT_EQ(Value(registry, kSpikes, 0, "qkv"), 0) << calibrated;
    // The histograms are still sampled: step 0 of the four, its 3 rows.
    EXPECT_EQ(Value(registry, "spikeserve_activation_token_absmax", 1, "down"),
              3)
        << calibrated;
  }
}

// A row whose input is NaN or infinite (its request then fails on the
// logits) counts as a spike and stays out of the histogram and the median:
// the histogram's sum would otherwise be NaN until a restart.
TEST(LayerMetricsTest, NonFiniteRowsAreSpikesNotSamples) {
  for (bool calibrated : {true, false}) {
    prometheus::Registry registry;
    LayerMetrics lm(&registry, TwoLayers(1, calibrated));
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    Step(lm, {1.f, nan, 1.f, inf, 1.f});
    EXPECT_EQ(Value(registry, kSpikes, 1, "down"), 2) << calibrated;
    EXPECT_EQ(Value(registry, "spikeserve_activation_token_absmax", 1, "down"),
              3)
        << calibrated;
    for (const prometheus::MetricFamily& f : registry.Collect()) {
      if (f.name != "spikeserve_activation_token_absmax") continue;
      for (const prometheus::ClientMetric& m : f.metric) {
        EXPECT_TRUE(std::isfinite(m.histogram.sample_sum)) << calibrated;
      }
    }
    EXPECT_EQ(Value(registry, "spikeserve_activation_spike_ratio", 1, "down"),
              1)
        << calibrated;
  }
}

// every = 0 switches the per-layer series off, spike tokens included.
TEST(LayerMetricsTest, SwitchedOffCountsNoSpikes) {
  prometheus::Registry registry;
  LayerMetricsOptions o;
  o.n_layers = 2;
  o.every = 0;
  LayerMetrics lm(&registry, o);
  Step(lm, {1.f, 1.f, 100.f});
  EXPECT_EQ(Value(registry, kSpikes, 1, "down"), 0);
}

v1::QuantPlan PlanWithSite(double median, double ratio, double served_median,
                           double served_ratio) {
  v1::QuantPlan plan;
  v1::SiteStats* st = plan.add_sites();
  st->set_layer(1);
  st->set_site("down");
  st->set_median_absmax(median);
  st->set_spike_ratio(ratio);
  st->set_served_median_absmax(served_median);
  st->set_served_spike_ratio(served_ratio);
  return plan;
}

// Which statistics the metrics judge a site's tokens against. The plain
// FP32 model's median (median_absmax) describes the served input only when
// the plan changes nothing before the site: on the committed default plan
// (prefix, smoothing, rotations) layer 29's down has a median of 42 there
// and a largest served token absmax of 4, so spikes could never count.
TEST(LayerMetricsTest, ReferencesComeFromTheServedInputs) {
  struct Case {
    std::string name;
    v1::QuantPlan plan;
    float want_median, want_ratio;  // 0 = no reference
  };
  std::vector<Case> cases;
  cases.push_back(
      {"plain plan, old fields", PlanWithSite(42, 500, 0, 0), 42, 500});
  cases.push_back(
      {"plain plan, served fields", PlanWithSite(42, 500, 3, 20), 3, 20});
  {
    v1::QuantPlan p = PlanWithSite(42, 500, 0, 0);
    p.mutable_smoothing()->set_enabled(true);
    cases.push_back({"smoothed, old fields", p, 0, 0});
    p.mutable_sites(0)->set_served_median_absmax(0.5);
    p.mutable_sites(0)->set_served_spike_ratio(4);
    cases.push_back({"smoothed, served fields", p, 0.5f, 4});
  }
  {
    v1::QuantPlan p = PlanWithSite(42, 500, 0, 0);
    p.mutable_qfep()->add_token_ids(1);
    cases.push_back({"prefix, old fields", p, 0, 0});
  }
  {
    v1::QuantPlan p = PlanWithSite(42, 500, 0, 0);
    p.mutable_rotation()->set_down_hadamard(true);
    cases.push_back({"down rotation, old fields", p, 0, 0});
  }
  {
    v1::QuantPlan p = PlanWithSite(42, 500, 0, 0);
    p.mutable_rotation()->set_norm_hadamard(true);
    cases.push_back({"norm rotation, old fields", p, 0, 0});
  }
  {
    v1::QuantPlan p = PlanWithSite(42, 500, 0, 0);
    p.add_sites()->add_smooth_scales(2.f);  // another site's scales
    cases.push_back({"site scales, old fields", p, 0, 0});
  }
  {
    v1::QuantPlan p = PlanWithSite(42, 500, 3, 20);
    p.mutable_sites(0)->set_layer(2);  // beyond the model's 2 layers
    cases.push_back({"layer out of range", p, 0, 0});
  }
  for (const Case& c : cases) {
    LayerMetricsOptions o;
    o.n_layers = 2;
    SetSpikeReferences(c.plan, &o);
    const SiteKey key{1, Site::kDown};
    const float median =
        o.calibrated_median.count(key) ? o.calibrated_median.at(key) : 0;
    const float ratio =
        o.calibrated_ratio.count(key) ? o.calibrated_ratio.at(key) : 0;
    EXPECT_EQ(median, c.want_median) << c.name;
    EXPECT_EQ(ratio, c.want_ratio) << c.name;
    // Only the plan's one site ever gets a reference.
    EXPECT_EQ(o.calibrated_median.size(), c.want_median > 0 ? 1u : 0u)
        << c.name;
    EXPECT_EQ(o.calibrated_ratio.size(), c.want_ratio > 0 ? 1u : 0u) << c.name;
  }
}

}  // namespace
}  // namespace spikeserve
