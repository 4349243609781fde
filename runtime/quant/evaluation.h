// Accuracy of a quantization scheme against FP32 (method.md §7):
// perplexity, KL divergence of next-token distributions from FP32 (mean and
// 99th percentile), and top-1 agreement, on the same target tokens.
#ifndef SPIKESERVE_RUNTIME_QUANT_EVALUATION_H_
#define SPIKESERVE_RUNTIME_QUANT_EVALUATION_H_

#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/model.h"

namespace spikeserve {

// One side of a comparison: a model, how to run it, and what precedes each
// window. With a non-empty `prefix` (QFeP) the prefix is computed once in
// FP32 and shared; otherwise each window runs as [bos] + window through the
// scheme, BOS included (it spikes like any first token).
struct EvalSide {
  const Model* model = nullptr;
  ForwardOptions options;
  std::vector<int32_t> prefix;
};

struct EvalResult {
  int64_t tokens = 0;     // scored targets: every window token
  double nll = 0;         // mean negative log-likelihood, nats
  double perplexity = 0;  // exp(nll)
  // Against the reference (0 without one).
  double kl_mean = 0, kl_p99 = 0;  // nats
  double top1_agreement = 0;       // fraction of positions
  double seconds = 0;              // test-side forward time
  double tokens_per_second = 0;    // forwarded tokens / seconds
};

// Scores `test` on `windows` (text tokens, no BOS); compares with
// `reference` when given (same windows, same targets).
absl::StatusOr<EvalResult> Evaluate(
    const EvalSide& test, const EvalSide* reference,
    const std::vector<std::vector<int32_t>>& windows, int32_t bos);

// Splits `tokens` into non-overlapping windows of `window` tokens (the
// remainder shorter than half a window is dropped), at most `max_windows`
// (0 = all).
std::vector<std::vector<int32_t>> MakeWindows(
    const std::vector<int32_t>& tokens, int window, int max_windows);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_QUANT_EVALUATION_H_
