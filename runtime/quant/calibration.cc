#include "runtime/quant/calibration.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "dnnl.hpp"
#include "runtime/linear/w4a8_linear.h"
#include "runtime/model/shared_prefix.h"
#include "runtime/quant/evaluation.h"

namespace spikeserve {
namespace {

double Median(std::vector<float> v) {
  if (v.empty()) return 0;
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  return v[mid];
}

// Gathers token absmax per site and window, plus channel maxima.
class StatsObserver : public ForwardObserver {
 public:
  // Token ids of the rows of the current batch, in row order.
  std::vector<int32_t> row_tokens;

  void OnSiteInput(int layer, Site site, const float* x, int m, int width,
                   absl::Span<const float> row_absmax,
                   absl::Span<const int> bounds) override {
    Acc& acc = sites_[{layer, site}];
    if (acc.channel_max.empty()) {
      acc.channel_max.assign(width, 0.0f);
      acc.channel_sq.assign(width, 0.0);
    }
    for (size_t e = 0; e + 1 < bounds.size(); ++e) {
      std::vector<float> window(row_absmax.begin() + bounds[e],
                                row_absmax.begin() + bounds[e + 1]);
      const float mx = *std::max_element(window.begin(), window.end());
      const double med = Median(window);
      if (med > 0) {
        acc.ratio_sum += mx / med;
        ++acc.ratio_count;
      }
      for (int r = bounds[e]; r < bounds[e + 1]; ++r) {
        acc.all.push_back(row_absmax[r]);
        if (row_absmax[r] > acc.top_absmax) {
          acc.top_absmax = row_absmax[r];
          acc.top_token = row_tokens[r];
        }
        const float* row = x + size_t(r) * width;
        for (int j = 0; j < width; ++j) {
          acc.channel_max[j] = std::max(acc.channel_max[j], std::abs(row[j]));
          acc.channel_sq[j] += double(row[j]) * row[j];
        }
      }
    }
  }

  CalibrationStats Finish() {
    CalibrationStats out;
    for (auto& [key, acc] : sites_) {
      SiteCalibration& s = out.sites[key];
      s.spike_ratio = acc.ratio_count ? acc.ratio_sum / acc.ratio_count : 0;
      s.max_absmax = acc.all.empty()
                         ? 0
                         : *std::max_element(acc.all.begin(), acc.all.end());
      const size_t tokens = acc.all.size();
      s.channel_mean_square.resize(acc.channel_sq.size());
      for (size_t j = 0; j < acc.channel_sq.size(); ++j) {
        s.channel_mean_square[j] =
            tokens == 0 ? 0.0f : float(acc.channel_sq[j] / tokens);
      }
      s.median_absmax = Median(std::move(acc.all));
      s.channel_max = std::move(acc.channel_max);
      s.top_token = acc.top_token;
      s.top_absmax = acc.top_absmax;
    }
    return out;
  }

 private:
  struct Acc {
    double ratio_sum = 0;
    int ratio_count = 0;
    std::vector<float> all;
    std::vector<float> channel_max;
    std::vector<double> channel_sq;  // Σ_t x[t][j]²
    int32_t top_token = -1;
    double top_absmax = 0;
  };
  std::map<SiteKey, Acc> sites_;
};

// Pool large enough for `n` sequences of `len` tokens plus a prefix.
absl::StatusOr<std::unique_ptr<KvPool>> PoolFor(const Model& model, int n,
                                                int len, int prefix) {
  constexpr int kBlock = 16;
  return model.NewKvPool(
      n * ((len + kBlock - 1) / kBlock + 1) + prefix / kBlock + 2, kBlock);
}

size_t MaxLen(const std::vector<std::vector<int32_t>>& w) {
  size_t n = 0;
  for (const auto& x : w) n = std::max(n, x.size());
  return n;
}

constexpr int kBatch = 4;  // windows per forward call

}  // namespace

double KlDivergence(const float* p_logits, const float* q_logits, int n) {
  const float pm = *std::max_element(p_logits, p_logits + n);
  const float qm = *std::max_element(q_logits, q_logits + n);
  double pz = 0, qz = 0;
  for (int i = 0; i < n; ++i) {
    pz += std::exp(double(p_logits[i]) - pm);
    qz += std::exp(double(q_logits[i]) - qm);
  }
  const double lp0 = pm + std::log(pz), lq0 = qm + std::log(qz);
  double kl = 0;
  for (int i = 0; i < n; ++i) {
    const double lp = p_logits[i] - lp0, lq = q_logits[i] - lq0;
    kl += std::exp(lp) * (lp - lq);
  }
  return std::max(0.0, kl);
}

namespace {

// Runs the windows through `model` in FP32, kBatch at a time, each after
// `prefix` (shared, its positions not rerun) or after BOS, with `obs`
// watching; `row_tokens` (when not null) gets each batch's token ids in
// row order before its forward. Returns the tokens run.
absl::StatusOr<int64_t> ForwardWindowsFp32(
    const Model& model, const std::vector<std::vector<int32_t>>& windows,
    const std::vector<int32_t>& prefix, int32_t bos, ForwardObserver* obs,
    std::vector<int32_t>* row_tokens) {
  auto pool =
      PoolFor(model, kBatch, int(MaxLen(windows)) + 1, int(prefix.size()));
  if (!pool.ok()) return pool.status();
  std::unique_ptr<SharedPrefix> shared;
  if (!prefix.empty()) {
    auto p = SharedPrefix::Compute(model, pool->get(), prefix);
    if (!p.ok()) return p.status();
    shared = *std::move(p);
  }
  ForwardOptions opt;
  opt.observer = obs;
  opt.all_fp32 = true;
  int64_t tokens = 0;
  std::vector<float> logits;
  for (size_t i = 0; i < windows.size(); i += kBatch) {
    std::vector<std::unique_ptr<SequenceKv>> seqs;
    std::vector<std::vector<int32_t>> inputs;
    std::vector<BatchEntry> batch;
    if (row_tokens) row_tokens->clear();
    const size_t end = std::min(windows.size(), i + kBatch);
    inputs.reserve(end - i);
    for (size_t j = i; j < end; ++j) {
      seqs.push_back(std::make_unique<SequenceKv>(pool->get()));
      inputs.emplace_back();
      if (shared) {
        if (absl::Status s = shared->AttachTo(seqs.back().get()); !s.ok())
          return s;
      } else {
        inputs.back().push_back(bos);
      }
      inputs.back().insert(inputs.back().end(), windows[j].begin(),
                           windows[j].end());
      batch.push_back({seqs.back().get(), inputs.back(), false});
      if (row_tokens) {
        row_tokens->insert(row_tokens->end(), inputs.back().begin(),
                           inputs.back().end());
      }
      tokens += int64_t(inputs.back().size());
    }
    if (absl::Status s = model.Forward(batch, &logits, opt); !s.ok()) return s;
  }
  return tokens;
}

// Σ_t x_t·x_tᵀ of the inputs of the chosen sites, [width][width] each.
class GramObserver : public ForwardObserver {
 public:
  explicit GramObserver(const std::set<SiteKey>& sites) {
    for (const SiteKey& k : sites) grams_[k];
  }
  void OnSiteInput(int layer, Site site, const float* x, int m, int width,
                   absl::Span<const float> /*row_absmax*/,
                   absl::Span<const int> /*bounds*/) override {
    auto it = grams_.find({layer, site});
    if (it == grams_.end()) return;
    std::vector<float>& g = it->second;
    if (g.empty()) g.assign(size_t(width) * width, 0.0f);
    // G += Xᵀ·X (X = x [m][width] row-major), oneDNN's sgemm.
    dnnl::sgemm('T', 'N', width, width, m, 1.0f, x, width, x, width, 1.0f,
                g.data(), width);
  }
  std::map<SiteKey, std::vector<float>> Finish() { return std::move(grams_); }

 private:
  std::map<SiteKey, std::vector<float>> grams_;
};

}  // namespace

absl::StatusOr<CalibrationStats> CollectSiteStats(
    const Model& model, const std::vector<std::vector<int32_t>>& windows,
    const std::vector<int32_t>& prefix, int32_t bos) {
  StatsObserver obs;
  absl::StatusOr<int64_t> tokens =
      ForwardWindowsFp32(model, windows, prefix, bos, &obs, &obs.row_tokens);
  if (!tokens.ok()) return tokens.status();
  CalibrationStats stats = obs.Finish();
  stats.windows = int(windows.size());
  stats.tokens = *tokens;
  return stats;
}

absl::StatusOr<std::map<SiteKey, std::vector<float>>> CollectSiteGrams(
    const Model& model, const std::vector<std::vector<int32_t>>& windows,
    const std::vector<int32_t>& prefix, int32_t bos,
    const std::set<SiteKey>& sites) {
  GramObserver obs(sites);
  absl::StatusOr<int64_t> tokens =
      ForwardWindowsFp32(model, windows, prefix, bos, &obs, nullptr);
  if (!tokens.ok()) return tokens.status();
  std::map<SiteKey, std::vector<float>> grams = obs.Finish();
  for (const SiteKey& k : sites) {
    if (grams[k].empty()) {
      return absl::InternalError(
          absl::StrCat("calibration: site ", SiteKeyName(k), " saw no input"));
    }
  }
  return grams;
}

absl::StatusOr<std::map<SiteKey, W4Plain>> GptqSites(
    const Model& model, const std::map<SiteKey, int>& groups,
    const GptqOptions& options,
    const std::vector<std::vector<int32_t>>& windows,
    const std::vector<int32_t>& prefix, int32_t bos) {
  std::set<SiteKey> keys;
  for (const auto& [key, group] : groups) keys.insert(key);
  auto grams = CollectSiteGrams(model, windows, prefix, bos, keys);
  if (!grams.ok()) return grams.status();
  std::map<SiteKey, W4Plain> out;
  for (const auto& [key, group] : groups) {
    const WeightRows& rows = model.site_rows(key.layer, key.site);
    GptqOptions o = options;
    o.group = group > 0 ? group : W4A8Linear::GroupFor(rows.cols());
    absl::StatusOr<W4Plain> q = GptqQuantize(rows, (*grams)[key], o);
    if (!q.ok()) {
      return absl::Status(
          q.status().code(),
          absl::StrCat("site ", SiteKeyName(key), ": ", q.status().message()));
    }
    out[key] = *std::move(q);
    (*grams)[key] = {};  // freed as we go
  }
  return out;
}

std::vector<SiteKey> SitesBySpikeRatio(const CalibrationStats& stats) {
  std::vector<SiteKey> keys;
  for (const auto& [k, unused] : stats.sites) keys.push_back(k);
  std::stable_sort(
      keys.begin(), keys.end(), [&](const SiteKey& a, const SiteKey& b) {
        return stats.sites.at(a).spike_ratio > stats.sites.at(b).spike_ratio;
      });
  return keys;
}

absl::StatusOr<double> MeanKlFromFp32(
    const Model& model, const std::vector<std::vector<int32_t>>& windows,
    const ForwardOptions& options, int32_t bos,
    const std::vector<int32_t>& prefix) {
  EvalSide test{&model, options, prefix};
  EvalSide ref{&model, options, prefix};
  ref.options.all_fp32 = true;
  ref.options.observer = nullptr;
  absl::StatusOr<EvalResult> r = Evaluate(test, &ref, windows, bos);
  if (!r.ok()) return r.status();
  return r->kl_mean;
}

absl::StatusOr<QfemChoice> SelectQfemSites(
    const Model& model, const CalibrationStats& stats,
    const std::vector<std::vector<int32_t>>& windows, int32_t bos,
    double tolerance, int max_sites, const std::vector<int32_t>& prefix) {
  QfemChoice c;
  const std::vector<SiteKey> order = SitesBySpikeRatio(stats);
  std::set<SiteKey> excluded;
  for (int k = 0; k <= std::min<int>(max_sites, int(order.size())); ++k) {
    if (k > 0) excluded.insert(order[k - 1]);
    ForwardOptions opt;
    opt.fp32_sites = &excluded;
    absl::StatusOr<double> kl =
        MeanKlFromFp32(model, windows, opt, bos, prefix);
    if (!kl.ok()) return kl.status();
    if (k == 0) c.w8a8_kl = *kl;
    c.sites = excluded;
    c.chosen_kl = *kl;
    c.alpha = k > 0 ? stats.sites.at(order[k - 1]).spike_ratio : 0;
    if (*kl <= tolerance) break;
  }
  return c;
}

namespace {

// Weights of a site's matrix (all its modules): K x N.
int64_t SiteWeights(const ModelConfig& c, Site site) {
  switch (site) {
    case Site::kQkv:
      return int64_t(c.hidden) * (c.q_dim() + 2 * c.kv_dim());
    case Site::kO:
      return int64_t(c.q_dim()) * c.hidden;
    case Site::kGateUp:
      return int64_t(c.hidden) * 2 * c.ffn;
    case Site::kDown:
      return int64_t(c.ffn) * c.hidden;
  }
  return 0;
}

}  // namespace

absl::StatusOr<W4Choice> SelectW4Sites(
    const Model& source, const QuantOptions& base,
    const std::vector<std::vector<int32_t>>& windows, int32_t bos,
    const std::vector<int32_t>& prefix, int group, double tolerance,
    double max_weight_fraction) {
  if (!base.w8a8) {
    return absl::InvalidArgumentError("W4 search: the base plan is not W8A8");
  }
  if (!(max_weight_fraction >= 0 && max_weight_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("W4 search: the weight fraction is ", max_weight_fraction,
                     "; it must lie in [0, 1]"));
  }
  const ModelConfig& c = source.config();
  auto kl_with =
      [&](const std::map<SiteKey, int>& w4) -> absl::StatusOr<double> {
    QuantOptions q = base;
    q.w4_sites = w4;
    q.w4_everywhere = false;
    absl::StatusOr<std::unique_ptr<Model>> m = source.WithQuant(q);
    if (!m.ok()) return m.status();
    return MeanKlFromFp32(**m, windows, ForwardOptions{}, bos, prefix);
  };
  W4Choice out;
  absl::StatusOr<double> base_kl = kl_with({});
  if (!base_kl.ok()) return base_kl.status();
  out.w8a8_kl = out.chosen_kl = *base_kl;
  // Sensitivity of each quantized site alone: KL increase, and per weight.
  struct Candidate {
    double per_weight;
    SiteKey key;
    double damage;
  };
  std::vector<Candidate> order;
  int64_t total_weights = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    for (Site s : kAllSites) {
      const SiteKey k{l, s};
      if (base.fp32_sites.count(k)) continue;
      total_weights += SiteWeights(c, s);
      absl::StatusOr<double> kl = kl_with({{k, group}});
      if (!kl.ok()) return kl.status();
      const double damage = *kl - *base_kl;
      order.push_back({damage / double(SiteWeights(c, s)), k, damage});
    }
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const Candidate& a, const Candidate& b) {
                     return a.per_weight < b.per_weight;
                   });
  for (const Candidate& o : order) out.ranked.push_back({o.key, o.damage});
  auto first = [&](int n) {
    std::map<SiteKey, int> w4;
    for (int i = 0; i < n; ++i) w4[order[i].key] = group;
    return w4;
  };
  // The longest prefix within the weight budget bounds the search.
  int within_budget = 0;
  for (int64_t w = 0; within_budget < int(order.size()); ++within_budget) {
    w += SiteWeights(c, order[within_budget].key.site);
    if (double(w) > max_weight_fraction * double(total_weights)) break;
  }
  // Largest n whose set stays within the tolerance: lo passes, hi fails.
  int lo = 0, hi = within_budget + 1;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    absl::StatusOr<double> kl = kl_with(first(mid));
    if (!kl.ok()) return kl.status();
    if (*kl - *base_kl <= tolerance) {
      lo = mid;
      out.chosen_kl = *kl;
    } else {
      hi = mid;
    }
  }
  out.sites = first(lo);
  int64_t w4_weights = 0;
  for (const auto& [k, unused] : out.sites)
    w4_weights += SiteWeights(c, k.site);
  out.w4_weight_fraction =
      total_weights > 0 ? double(w4_weights) / double(total_weights) : 0;
  return out;
}

absl::StatusOr<QfepChoice> SearchQfepPrefix(
    const Model& model, const CalibrationStats& stats,
    const std::vector<std::vector<int32_t>>& windows, int32_t bos,
    int n_context) {
  const std::vector<SiteKey> order = SitesBySpikeRatio(stats);
  if (order.empty())
    return absl::FailedPreconditionError("qfep: no statistics");
  QfepChoice out;
  out.spike_site = order[0];
  // Candidates: the 3 token ids with the largest a_t at m* (not BOS).
  class SiteAbsmax : public ForwardObserver {
   public:
    SiteKey want;
    std::vector<float> absmax;  // rows of the last call at `want`
    void OnSiteInput(int layer, Site site, const float*, int, int,
                     absl::Span<const float> a,
                     absl::Span<const int>) override {
      if (SiteKey{layer, site} == want) absmax.assign(a.begin(), a.end());
    }
  } obs;
  obs.want = out.spike_site;
  ForwardOptions opt;
  opt.observer = &obs;
  opt.all_fp32 = true;
  auto pool = PoolFor(model, 64, int(MaxLen(windows)) + 1, 0);
  if (!pool.ok()) return pool.status();
  absl::flat_hash_map<int32_t, float> best;  // token -> largest a_t
  absl::flat_hash_map<int32_t, int> freq;
  std::vector<float> logits;
  for (const auto& window : windows) {
    std::vector<int32_t> w = {bos};
    w.insert(w.end(), window.begin(), window.end());
    SequenceKv seq(pool->get());
    if (absl::Status s = model.Forward({{&seq, w, false}}, &logits, opt);
        !s.ok()) {
      return s;
    }
    for (size_t t = 0; t < w.size(); ++t) {
      ++freq[w[t]];
      if (w[t] == bos) continue;
      float& b = best[w[t]];
      b = std::max(b, obs.absmax[t]);
    }
  }
  std::vector<std::pair<float, int32_t>> ranked;
  for (const auto& [tok, a] : best) ranked.push_back({a, tok});
  std::sort(ranked.rbegin(), ranked.rend());
  for (size_t i = 0; i < std::min<size_t>(3, ranked.size()); ++i) {
    out.candidates.push_back(ranked[i].second);
  }
  std::vector<std::pair<int, int32_t>> common;
  for (const auto& [tok, n] : freq) {
    if (tok != bos) common.push_back({n, tok});
  }
  std::sort(common.begin(), common.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  if (int(common.size()) > n_context) common.resize(n_context);
  // Score [bos, c, t, c, t] by a[2] / a[4], 64 sequences per call.
  std::vector<std::vector<int32_t>> probes;
  for (int32_t t : out.candidates) {
    for (const auto& [unused, c] : common) probes.push_back({bos, c, t, c, t});
  }
  out.score = -1;
  for (size_t i = 0; i < probes.size(); i += 64) {
    std::vector<std::unique_ptr<SequenceKv>> seqs;
    std::vector<BatchEntry> batch;
    for (size_t j = i; j < std::min(probes.size(), i + 64); ++j) {
      seqs.push_back(std::make_unique<SequenceKv>(pool->get()));
      batch.push_back({seqs.back().get(), probes[j], false});
    }
    if (absl::Status s = model.Forward(batch, &logits, opt); !s.ok()) return s;
    for (size_t j = 0; j < batch.size(); ++j) {
      const float a2 = obs.absmax[j * 5 + 2], a4 = obs.absmax[j * 5 + 4];
      const double score = a4 > 0 ? a2 / a4 : 0;
      if (score > out.score) {
        out.score = score;
        out.prefix = {bos, probes[i + j][1], probes[i + j][2]};
      }
    }
  }
  if (out.prefix.empty()) {
    return absl::FailedPreconditionError("qfep: no candidate prefix");
  }
  return out;
}

}  // namespace spikeserve
