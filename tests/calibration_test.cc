// Calibration on the planted-spike model (tests/fixtures/planted_spike.h):
// the spike is found, QFeM and QFeP each remove its damage, the spike guard
// catches it when static ranges were calibrated without it.
#include "runtime/quant/calibration.h"

#include <cmath>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/linear/w4a8_linear.h"
#include "runtime/model/shared_prefix.h"
#include "runtime/quant/evaluation.h"
#include "tests/fixtures/planted_spike.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::BuildPlantedSpikeModel;
using ::spikeserve::testing::kSpikeToken;

constexpr int32_t kBos = 1;

// Random tokens (never T), with T at `t_pos` when >= 0.
std::vector<int32_t> Tokens(int n, uint32_t seed, int t_pos) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) {
    do {
      x = int32_t(8 + rng() % 240);
    } while (x == kSpikeToken);
  }
  if (t_pos >= 0) v[t_pos] = kSpikeToken;
  return v;
}

// Relative L2 distance of all logits of `tokens` (after `prefix`) between
// two models; the prefix always runs in FP32 (QFeP).
double LogitError(const Model& test, const Model& ref,
                  const std::vector<int32_t>& tokens,
                  const std::vector<int32_t>& prefix,
                  ForwardObserver* obs = nullptr) {
  std::vector<float> a, b;
  for (auto [m, out] : {std::pair{&test, &a}, std::pair{&ref, &b}}) {
    auto pool = *m->NewKvPool(8, 16);
    std::unique_ptr<SharedPrefix> p;
    SequenceKv seq(pool.get());
    if (!prefix.empty()) {
      p = *SharedPrefix::Compute(*m, pool.get(), prefix);
      EXPECT_TRUE(p->AttachTo(&seq).ok());
    }
    ForwardOptions opt;
    opt.observer = m == &test ? obs : nullptr;
    EXPECT_TRUE(m->Forward({{&seq, tokens, true}}, out, opt).ok());
  }
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * double(a[i] - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

class GuardCounter : public ForwardObserver {
 public:
  void OnGuardFallback(int layer, Site site, int rows) override {
    fallbacks[{layer, site}] += rows;
  }
  std::map<SiteKey, int> fallbacks;
};

class PlantedSpike : public ::testing::Test {
 protected:
  void SetUp() override {
    planted_ = BuildPlantedSpikeModel();
    fp32_ = *Model::FromWeights(planted_.config, planted_.weights);
    for (int i = 0; i < 6; ++i) windows_.push_back(Tokens(24, 100 + i, 3 + i));
    prompt_ = Tokens(20, 7, 4);
  }
  std::unique_ptr<Model> Quantized(QuantOptions q) {
    q.w8a8 = true;
    q.warmup_rows = 32;
    auto m = Model::FromWeights(planted_.config, planted_.weights, q);
    EXPECT_TRUE(m.ok()) << m.status();
    return *std::move(m);
  }
  testing::PlantedModel planted_;
  std::unique_ptr<Model> fp32_;
  std::vector<std::vector<int32_t>> windows_;
  std::vector<int32_t> prompt_;
};

TEST_F(PlantedSpike, CalibrationFindsSiteAndToken) {
  auto stats = CollectSiteStats(*fp32_, windows_, {}, kBos);
  ASSERT_TRUE(stats.ok()) << stats.status();
  const SiteKey top = SitesBySpikeRatio(*stats)[0];
  EXPECT_EQ(top, (SiteKey{1, Site::kDown}));
  const SiteCalibration& s = stats->sites.at(top);
  EXPECT_EQ(s.top_token, kSpikeToken);
  EXPECT_GT(s.spike_ratio, 300.0);
  std::printf("planted site %s: ratio %.0f, max %.0f, median %.3f\n",
              SiteKeyName(top).c_str(), s.spike_ratio, s.max_absmax,
              s.median_absmax);
}

// Sums x[t][j]² at one site, as the windows run one by one after BOS.
class SquareProbe : public ForwardObserver {
 public:
  explicit SquareProbe(SiteKey key) : key_(key) {}
  void OnSiteInput(int layer, Site site, const float* x, int m, int width,
                   absl::Span<const float>, absl::Span<const int>) override {
    if (!(SiteKey{layer, site} == key_)) return;
    sums.resize(width);
    for (int r = 0; r < m; ++r) {
      for (int j = 0; j < width; ++j) {
        sums[j] += double(x[size_t(r) * width + j]) * x[size_t(r) * width + j];
      }
    }
    rows += m;
  }
  std::vector<double> sums;
  int rows = 0;

 private:
  SiteKey key_;
};

// The channels' mean squares (W4 importance) are the mean over every
// counted position of x², here recomputed window by window; at the planted
// site the spiking neuron's channel carries the most.
TEST_F(PlantedSpike, CalibrationMeasuresChannelMeanSquares) {
  auto stats = CollectSiteStats(*fp32_, windows_, {}, kBos);
  ASSERT_TRUE(stats.ok()) << stats.status();
  for (const SiteKey key : {SiteKey{1, Site::kDown}, SiteKey{0, Site::kQkv}}) {
    SquareProbe probe(key);
    for (const auto& w : windows_) {
      std::vector<int32_t> tokens = {kBos};
      tokens.insert(tokens.end(), w.begin(), w.end());
      auto pool = *fp32_->NewKvPool(8, 16);
      SequenceKv seq(pool.get());
      std::vector<float> logits;
      ForwardOptions opt;
      opt.observer = &probe;
      ASSERT_TRUE(fp32_->Forward({{&seq, tokens, false}}, &logits, opt).ok());
    }
    const std::vector<float>& ms = stats->sites.at(key).channel_mean_square;
    ASSERT_EQ(ms.size(), probe.sums.size());
    for (size_t j = 0; j < ms.size(); ++j) {
      const double want = probe.sums[j] / probe.rows;
      EXPECT_NEAR(ms[j], want, 1e-4 * want + 1e-9)
          << SiteKeyName(key) << " channel " << j;
    }
    if (key.site == Site::kDown) {
      EXPECT_EQ(std::max_element(ms.begin(), ms.end()) - ms.begin(), 0);
    }
  }
}

// GPTQ's Σ x·xᵀ per site (CollectSiteGrams): symmetric, its diagonal the
// channel mean squares times the rows counted, only the sites asked for.
TEST_F(PlantedSpike, GramsHoldTheMeanSquaresOnTheirDiagonal) {
  auto stats = CollectSiteStats(*fp32_, windows_, {}, kBos);
  ASSERT_TRUE(stats.ok()) << stats.status();
  const std::set<SiteKey> sites = {{1, Site::kDown}, {0, Site::kQkv}};
  auto grams = CollectSiteGrams(*fp32_, windows_, {}, kBos, sites);
  ASSERT_TRUE(grams.ok()) << grams.status();
  ASSERT_EQ(grams->size(), sites.size());
  for (const SiteKey& key : sites) {
    const std::vector<float>& ms = stats->sites.at(key).channel_mean_square;
    const std::vector<float>& g = grams->at(key);
    const size_t k = ms.size();
    ASSERT_EQ(g.size(), k * k) << SiteKeyName(key);
    for (size_t i = 0; i < k; ++i) {
      const double want = double(ms[i]) * double(stats->tokens);
      EXPECT_NEAR(g[i * k + i], want, 1e-4 * want + 1e-6)
          << SiteKeyName(key) << " channel " << i;
      for (size_t j = 0; j < i; ++j) {
        EXPECT_NEAR(g[i * k + j], g[j * k + i],
                    1e-5 * (std::abs(g[i * k + j]) + 1e-3));
      }
    }
  }
}

// GptqSites: each site's GPTQ on its rows with its own E[xxT], at the group
// asked for (0 = the largest dividing its width).
TEST_F(PlantedSpike, GptqSitesQuantizeEachSiteWithItsOwnGram) {
  const std::map<SiteKey, int> groups = {{{0, Site::kO}, 32},
                                         {{1, Site::kDown}, 0}};
  GptqOptions o;
  o.with_min = true;
  auto sites = GptqSites(*fp32_, groups, o, windows_, {}, kBos);
  ASSERT_TRUE(sites.ok()) << sites.status();
  ASSERT_EQ(sites->size(), 2u);
  auto grams = CollectSiteGrams(*fp32_, windows_, {}, kBos,
                                {{0, Site::kO}, {1, Site::kDown}});
  ASSERT_TRUE(grams.ok()) << grams.status();
  for (const auto& [key, group] : groups) {
    const WeightRows& rows = fp32_->site_rows(key.layer, key.site);
    o.group = group > 0 ? group : W4A8Linear::GroupFor(rows.cols());
    auto want = GptqQuantize(rows, grams->at(key), o);
    ASSERT_TRUE(want.ok()) << want.status();
    const W4Plain& got = sites->at(key);
    EXPECT_EQ(got.group, o.group) << SiteKeyName(key);
    EXPECT_TRUE(got.has_min);
    EXPECT_EQ(got.u, want->u) << SiteKeyName(key);
    EXPECT_EQ(got.scale, want->scale);
    EXPECT_EQ(got.min, want->min);
  }
}

TEST_F(PlantedSpike, QfemAndQfepRemoveTheDamage) {
  auto w8a8 = Quantized({});
  const double base = LogitError(*w8a8, *fp32_, prompt_, {});
  auto qfem = Quantized({.fp32_sites = {{1, Site::kDown}}});
  const double with_qfem = LogitError(*qfem, *fp32_, prompt_, {});
  const std::vector<int32_t> prefix = {kBos, 9, kSpikeToken};
  const double with_qfep = LogitError(*w8a8, *fp32_, prompt_, prefix);
  std::printf("relative logit error: w8a8 %.4f, +qfem %.4f, +qfep %.4f\n", base,
              with_qfem, with_qfep);
  EXPECT_GT(base, 0.05);
  EXPECT_LT(with_qfem, 0.02);
  EXPECT_LT(with_qfep, 0.02);
}

TEST_F(PlantedSpike, QfemSearchExcludesThePlantedSite) {
  auto stats = *CollectSiteStats(*fp32_, windows_, {}, kBos);
  auto w8a8 = Quantized({});
  auto choice = SelectQfemSites(*w8a8, stats, windows_, kBos, 0.01, 8);
  ASSERT_TRUE(choice.ok()) << choice.status();
  std::printf("qfem: kl from fp32 %.5f -> %.5f with %zu sites\n",
              choice->w8a8_kl, choice->chosen_kl, choice->sites.size());
  EXPECT_TRUE(choice->sites.count({1, Site::kDown}));
  EXPECT_LE(choice->chosen_kl, 0.01);
  EXPECT_GT(choice->w8a8_kl, 0.01);
}

TEST_F(PlantedSpike, QfepSearchPutsTheTokenInThePrefix) {
  auto stats = *CollectSiteStats(*fp32_, windows_, {}, kBos);
  auto choice = SearchQfepPrefix(*fp32_, stats, windows_, kBos, 20);
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_EQ(choice->spike_site, (SiteKey{1, Site::kDown}));
  ASSERT_EQ(choice->prefix.size(), 3u);
  EXPECT_EQ(choice->prefix[0], kBos);
  EXPECT_GT(choice->score, 100.0);
  EXPECT_EQ(choice->prefix[2], kSpikeToken);
  EXPECT_EQ(choice->candidates[0], kSpikeToken);
}

// Static ranges calibrated on text without T; a prompt with T: the guard
// recomputes the spiking row of 1.down in FP32 and the error stays small.
TEST_F(PlantedSpike, SpikeGuardCatchesUncalibratedSpike) {
  std::vector<std::vector<int32_t>> clean;
  for (int i = 0; i < 6; ++i) clean.push_back(Tokens(24, 200 + i, -1));
  auto stats = *CollectSiteStats(*fp32_, clean, {}, kBos);
  QuantOptions q{.mode = ActQuantMode::kPerTensorStatic};
  for (const auto& [key, s] : stats.sites) {
    q.static_absmax[key] = std::max(float(s.max_absmax), 1e-6f);
  }
  auto unguarded = Quantized(q);
  const double clipped = LogitError(*unguarded, *fp32_, prompt_, {});
  // Rows after T carry a feature the clean text never showed (they attend
  // to T), 1.5-1.9x beyond their calibrated range at 1.qkv and 1.gate_up:
  // a tight factor sends those to FP32 too.
  q.guard_factor = 1.2f;
  auto guarded = Quantized(q);
  GuardCounter obs;
  const double with_guard = LogitError(*guarded, *fp32_, prompt_, {}, &obs);
  std::printf("static: clipped %.4f, guarded %.4f, fallbacks at 1.down %d\n",
              clipped, with_guard, obs.fallbacks[{1, Site::kDown}]);
  EXPECT_GT(clipped, 0.3);
  EXPECT_EQ((obs.fallbacks[{1, Site::kDown}]), 1);  // the one T row
  EXPECT_LT(with_guard, 0.02);
}

// Mixed precision "auto": the chosen W4A8 set keeps the KL within the
// tolerance of the W8A8 plan (scored independently here) and one more site
// in the ranking would not; QFeM sites are never candidates.
TEST_F(PlantedSpike, W4SearchHoldsTheTolerance) {
  QuantOptions base;
  base.w8a8 = true;
  base.warmup_rows = 32;
  base.fp32_sites = {{1, Site::kDown}};
  auto kl_of = [&](const std::map<SiteKey, int>& w4) {
    QuantOptions q = base;
    q.w4_sites = w4;
    auto m = fp32_->WithQuant(q);
    EXPECT_TRUE(m.ok()) << m.status();
    return *MeanKlFromFp32(**m, windows_, {}, kBos);
  };
  std::map<SiteKey, int> everywhere;
  for (int l = 0; l < 2; ++l) {
    for (Site s : {Site::kQkv, Site::kO, Site::kGateUp, Site::kDown}) {
      if (!base.fp32_sites.count({l, s})) everywhere[{l, s}] = 32;
    }
  }
  const double w8a8 = kl_of({}), all_w4 = kl_of(everywhere);
  ASSERT_GT(all_w4, w8a8);
  struct Case {
    double tolerance;
    size_t want_sites;  // 0, 7 (all), or ~0u for "in between"
  };
  for (const Case& t :
       {Case{-1, 0}, Case{1e9, 7}, Case{(all_w4 - w8a8) / 2, ~size_t(0)}}) {
    SCOPED_TRACE(t.tolerance);
    auto choice =
        SelectW4Sites(*fp32_, base, windows_, kBos, {}, 32, t.tolerance);
    ASSERT_TRUE(choice.ok()) << choice.status();
    ASSERT_EQ(choice->ranked.size(), 7u);
    for (const auto& [k, unused] : choice->ranked) {
      EXPECT_FALSE(k == (SiteKey{1, Site::kDown}));
    }
    EXPECT_NEAR(choice->w8a8_kl, w8a8, 1e-9);
    if (t.want_sites != ~size_t(0)) {
      EXPECT_EQ(choice->sites.size(), t.want_sites);
    }
    // The first n of the ranking, each with the group asked for.
    const size_t n = choice->sites.size();
    std::map<SiteKey, int> next;
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(choice->sites.count(choice->ranked[i].first), 1u);
      next[choice->ranked[i].first] = 32;
    }
    for (const auto& [k, g] : choice->sites) EXPECT_EQ(g, 32);
    const double kl = kl_of(choice->sites);
    EXPECT_NEAR(choice->chosen_kl, kl, 1e-9);
    EXPECT_LE(kl - w8a8, std::max(t.tolerance, 0.0));
    if (n < 7) {
      next[choice->ranked[n].first] = 32;
      EXPECT_GT(kl_of(next) - w8a8, t.tolerance);
    }
  }
}

// The weight budget of the search: the chosen prefix of the ranking holds
// at most the fraction asked for of the quantized weights (counted here
// from the shapes) and the next site would break it; a fraction outside
// [0, 1] is refused.
TEST_F(PlantedSpike, W4SearchHoldsTheWeightBudget) {
  QuantOptions base;
  base.w8a8 = true;
  base.warmup_rows = 32;
  base.fp32_sites = {{1, Site::kDown}};
  const ModelConfig& c = fp32_->config();
  auto weights = [&](Site s) -> double {
    const double kv = double(c.n_kv_heads) * c.head_dim;
    const double q = double(c.n_heads) * c.head_dim;
    switch (s) {
      case Site::kQkv:
        return c.hidden * (q + 2 * kv);
      case Site::kO:
        return q * c.hidden;
      case Site::kGateUp:
        return 2.0 * c.hidden * c.ffn;
      case Site::kDown:
        return double(c.ffn) * c.hidden;
    }
    return 0;
  };
  double total = 0;
  for (int l = 0; l < 2; ++l) {
    for (Site s : kAllSites) {
      if (!base.fp32_sites.count({l, s})) total += weights(s);
    }
  }
  for (double fraction : {0.0, 0.3, 0.6, 1.0}) {
    SCOPED_TRACE(fraction);
    auto choice =
        SelectW4Sites(*fp32_, base, windows_, kBos, {}, 32, 1e9, fraction);
    ASSERT_TRUE(choice.ok()) << choice.status();
    double chosen = 0;
    for (const auto& [k, g] : choice->sites) chosen += weights(k.site);
    EXPECT_LE(chosen, fraction * total);
    EXPECT_NEAR(choice->w4_weight_fraction, chosen / total, 1e-12);
    const size_t n = choice->sites.size();
    if (n < choice->ranked.size()) {
      EXPECT_GT(chosen + weights(choice->ranked[n].first.site),
                fraction * total);
    }
  }
  EXPECT_EQ(SelectW4Sites(*fp32_, base, windows_, kBos, {}, 32, 1e9, 1.5)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace spikeserve

namespace spikeserve {
namespace {

TEST_F(PlantedSpike, EvaluateComparesSchemesWithFp32) {
  EvalSide fp32{fp32_.get(), {}, {}};
  auto same = Evaluate(fp32, &fp32, windows_, kBos);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->tokens, 6 * 24);
  EXPECT_NEAR(same->kl_mean, 0.0, 1e-9);
  EXPECT_EQ(same->top1_agreement, 1.0);
  EXPECT_GT(same->perplexity, 1.0);
  auto w8a8 = Quantized({});
  auto plain = *Evaluate({w8a8.get(), {}, {}}, &fp32, windows_, kBos);
  // The prefix changes the context, so QFeP's reference is FP32 with the
  // same prefix: the KL then measures quantization damage only.
  const std::vector<int32_t> prefix = {kBos, 9, kSpikeToken};
  EvalSide fp32_prefixed{fp32_.get(), {}, prefix};
  auto qfep =
      *Evaluate({w8a8.get(), {}, prefix}, &fp32_prefixed, windows_, kBos);
  std::printf("kl mean/p99: w8a8 %.4f/%.4f, +qfep %.4f/%.4f\n", plain.kl_mean,
              plain.kl_p99, qfep.kl_mean, qfep.kl_p99);
  EXPECT_GT(plain.kl_mean, 0.01);
  EXPECT_LT(qfep.kl_mean, plain.kl_mean / 5);
  EXPECT_GE(plain.kl_p99, plain.kl_mean);
}

// Issue 23 D4: non-finite logits (e.g. from a broken plan) make Evaluate
// fail, naming the value, instead of reporting a perplexity of nan.
TEST_F(PlantedSpike, EvaluateRefusesNonFiniteResults) {
  ModelWeights broken = planted_.weights;
  broken.output_norm[0] = NAN;
  auto model = Model::FromWeights(planted_.config, broken);
  ASSERT_TRUE(model.ok()) << model.status();
  EvalSide fp32{fp32_.get(), {}, {}};
  auto r = Evaluate({model->get(), {}, {}}, &fp32, windows_, kBos);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::HasSubstr("is not finite"));
}

}  // namespace
}  // namespace spikeserve
