// Next-token selection from logits: greedy, or temperature sampling with
// top-k / top-p / min-p truncation and repetition, presence and frequency
// penalties. Seeded and reproducible: the same seed, logits and history give
// the same tokens on every run and every machine (std::mt19937_64 and our own
// uniform draw, not std::uniform_real_distribution, whose output is
// implementation-defined).
#ifndef SPIKESERVE_RUNTIME_SERVING_SAMPLER_H_
#define SPIKESERVE_RUNTIME_SERVING_SAMPLER_H_

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"

namespace spikeserve {

struct SamplingParams {
  float temperature = 0.0f;         // 0 = greedy (argmax); else > 0
  int top_k = 0;                    // 0 = off; else keep the k most likely
  float top_p = 1.0f;               // (0, 1]; 1 = off
  float min_p = 0.0f;               // [0, 1); keep p >= min_p * p_max
  float repetition_penalty = 1.0f;  // [0.01, 10]; 1 = off (CTRL-style, on every
                                    // token seen in prompt or output)
  float presence_penalty = 0.0f;    // [-2, 2]; on tokens of the output
  float frequency_penalty = 0.0f;   // [-2, 2]; times their output count
  uint64_t seed = 0;
  // Added to these tokens' logits (id, bias in [-100, 100]), after the
  // penalties; ids are checked against the vocabulary by the caller.
  std::vector<std::pair<int32_t, float>> logit_bias;
};

// Most tokens a request may bias (OpenAI's logit_bias).
constexpr int kMaxLogitBiasTokens = 1024;

// InvalidArgument naming the field and its allowed range.
absl::Status ValidateSamplingParams(const SamplingParams& p);

struct SampledToken {
  int32_t id = -1;
  float logprob = 0.0f;  // log-softmax of the (penalized, unscaled) logits
};

// Per-sequence sampler state (RNG, output token counts). Not thread-safe.
class Sampler {
 public:
  Sampler(const SamplingParams& params, absl::Span<const int32_t> prompt);

  // Picks the next token from `logits` [vocab] and records it as output.
  // When `top` is given it receives the `top_n` most likely tokens of the
  // same penalized, unscaled distribution (for logprobs).
  SampledToken Sample(absl::Span<const float> logits, int top_n = 0,
                      std::vector<SampledToken>* top = nullptr);

 private:
  // logits with penalties applied.
  // The logits with penalties applied: `logits` itself when there are
  // none, else a copy in work_.
  absl::Span<const float> Penalize(absl::Span<const float> logits);
  double Uniform();  // [0, 1) from the 53 high bits

  SamplingParams p_;
  std::mt19937_64 rng_;
  absl::flat_hash_map<int32_t, int> prompt_seen_;  // token -> 1
  absl::flat_hash_map<int32_t, int> output_counts_;
  std::vector<float> work_;
  std::vector<int32_t> order_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_SERVING_SAMPLER_H_
