#include "runtime/serving/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "runtime/model/ops.h"

namespace spikeserve {
namespace {

absl::Status OutOfRange(absl::string_view field, double v,
                        absl::string_view range) {
  return absl::InvalidArgumentError(absl::StrCat(
      "sampling.", field, " = ", v, " is outside the allowed range ", range));
}

// log-softmax normalizer: log Σ exp(x).
// log(sum_i e^x_i), with the vectorized exponential of ops.h (relative
// error ~1e-7 per term; this runs over the whole vocabulary every token).
double LogSumExp(absl::Span<const float> x) {
  const float mx = *std::max_element(x.begin(), x.end());
  return mx + std::log(SumExpShifted(x.data(), int(x.size()), mx));
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!(p.temperature >= 0 && p.temperature <= 100)) {
    return OutOfRange("temperature", p.temperature, "[0, 100]");
  }
  if (p.top_k < 0) return OutOfRange("top_k", p.top_k, "[0, vocab]");
  if (!(p.top_p > 0 && p.top_p <= 1))
    return OutOfRange("top_p", p.top_p, "(0, 1]");
  if (!(p.min_p >= 0 && p.min_p < 1))
    return OutOfRange("min_p", p.min_p, "[0, 1)");
  // Not (0, 10]: a penalty near 0 divides positive logits to infinity
  // (1e-38 made every logprob NaN). 0.01 already scales a logit 100x.
  if (!(p.repetition_penalty >= 0.01f && p.repetition_penalty <= 10)) {
    return OutOfRange("repetition_penalty", p.repetition_penalty, "[0.01, 10]");
  }
  if (!(p.presence_penalty >= -2 && p.presence_penalty <= 2)) {
    return OutOfRange("presence_penalty", p.presence_penalty, "[-2, 2]");
  }
  if (!(p.frequency_penalty >= -2 && p.frequency_penalty <= 2)) {
    return OutOfRange("frequency_penalty", p.frequency_penalty, "[-2, 2]");
  }
  if (p.logit_bias.size() > size_t(kMaxLogitBiasTokens)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.logit_bias has ", p.logit_bias.size(),
                     " tokens; at most ", kMaxLogitBiasTokens));
  }
  for (const auto& [id, bias] : p.logit_bias) {
    if (!(bias >= -100 && bias <= 100)) {
      return OutOfRange(absl::StrCat("logit_bias[", id, "]"), bias,
                        "[-100, 100]");
    }
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, absl::Span<const int32_t> prompt)
    : p_(params), rng_(params.seed) {
  if (p_.repetition_penalty != 1.0f) {
    for (int32_t t : prompt) prompt_seen_[t] = 1;
  }
}

double Sampler::Uniform() { return double(rng_() >> 11) * 0x1.0p-53; }

absl::Span<const float> Sampler::Penalize(absl::Span<const float> logits) {
  const bool rep = p_.repetition_penalty != 1.0f;
  const bool additive = p_.presence_penalty != 0 || p_.frequency_penalty != 0;
  const bool bias = !p_.logit_bias.empty();
  // Without penalties the logits are used in place (no vocab-sized copy).
  if (!rep && !additive && !bias) return logits;
  work_.assign(logits.begin(), logits.end());
  auto& v = work_;
  const int vocab = int(v.size());
  // Penalized logits stay finite whatever the penalty (the validated range
  // keeps them far from this bound): an infinite logit makes the
  // log-softmax, and every logprob, NaN.
  constexpr float kMaxLogit = 1e30f;
  auto apply_rep = [&](int32_t t) {
    if (t < 0 || t >= vocab) return;
    const float r =
        v[t] > 0 ? v[t] / p_.repetition_penalty : v[t] * p_.repetition_penalty;
    v[t] = std::clamp(r, -kMaxLogit, kMaxLogit);
  };
  if (rep) {
    for (const auto& [t, unused] : prompt_seen_) apply_rep(t);
    for (const auto& [t, unused] : output_counts_) {
      if (!prompt_seen_.contains(t)) apply_rep(t);
    }
  }
  if (additive) {
    for (const auto& [t, n] : output_counts_) {
      if (t < 0 || t >= vocab) continue;
      v[t] -= p_.presence_penalty + p_.frequency_penalty * float(n);
    }
  }
  for (const auto& [t, b] : p_.logit_bias) {
    if (t < 0 || t >= vocab) continue;
    v[t] = std::clamp(v[t] + b, -kMaxLogit, kMaxLogit);
  }
  return v;
}

SampledToken Sampler::Sample(absl::Span<const float> logits, int top_n,
                             std::vector<SampledToken>* top) {
  const absl::Span<const float> v = Penalize(logits);
  const int vocab = int(v.size());
  const double lse = LogSumExp(v);
  int32_t chosen = 0;
  if (p_.temperature == 0.0f) {
    // Greedy; ties go to the lowest id, as argmax conventions do.
    chosen = int32_t(std::max_element(v.begin(), v.end()) - v.begin());
  } else {
    // Candidates sorted by logit (descending, ties by id for determinism).
    // Tokens more than 40 T below the maximum have probability < e^-40 of
    // the top token's (below double resolution of the cumulative sums):
    // leaving them out spares sorting the whole vocabulary.
    const float mx_logit = *std::max_element(v.begin(), v.end());
    const float floor = mx_logit - 40.0f * p_.temperature;
    order_.clear();
    for (int32_t i = 0; i < vocab; ++i) {
      if (v[i] >= floor) order_.push_back(i);
    }
    // A NaN maximum passes no token (the engine refuses such logits before
    // sampling): never an empty list to read from.
    if (order_.empty()) order_.push_back(0);
    int keep = int(order_.size());
    if (p_.top_k > 0 && p_.top_k < keep) keep = p_.top_k;
    auto by_logit = [&](int32_t a, int32_t b) {
      return v[a] > v[b] || (v[a] == v[b] && a < b);
    };
    std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(),
                      by_logit);
    // Probabilities at temperature T over the kept candidates.
    std::vector<double> prob(keep);
    const double mx = v[order_[0]];
    double sum = 0;
    for (int i = 0; i < keep; ++i) {
      prob[i] = std::exp((v[order_[i]] - mx) / p_.temperature);
      sum += prob[i];
    }
    for (double& q : prob) q /= sum;
    // top-p: the smallest prefix whose mass reaches top_p.
    if (p_.top_p < 1.0f) {
      double cum = 0;
      for (int i = 0; i < keep; ++i) {
        cum += prob[i];
        if (cum >= p_.top_p) {
          keep = i + 1;
          break;
        }
      }
    }
    // min-p: drop tokens below min_p times the most likely one.
    if (p_.min_p > 0) {
      int k = 1;
      while (k < keep && prob[k] >= p_.min_p * prob[0]) ++k;
      keep = k;
    }
    double mass = 0;
    for (int i = 0; i < keep; ++i) mass += prob[i];
    double u = Uniform() * mass;
    chosen = order_[keep - 1];
    for (int i = 0; i < keep; ++i) {
      if (u < prob[i]) {
        chosen = order_[i];
        break;
      }
      u -= prob[i];
    }
  }
  if (top != nullptr) {
    const int n = std::min(top_n, vocab);
    std::vector<int32_t> idx(vocab);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + n, idx.end(),
                      [&](int32_t a, int32_t b) {
                        return v[a] > v[b] || (v[a] == v[b] && a < b);
                      });
    top->resize(n);
    for (int i = 0; i < n; ++i) {
      (*top)[i] = {idx[i], float(v[idx[i]] - lse)};
    }
  }
  ++output_counts_[chosen];
  return {chosen, float(v[chosen] - lse)};
}

}  // namespace spikeserve
