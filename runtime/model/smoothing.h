// SmoothQuant (method.md §6): per input channel j of a site,
//   s_j = max|X_j|^alpha / max|W_j|^(1 - alpha),
// activations divided by s and weight columns multiplied by s, folded into
// the weights offline so the runtime pays nothing:
//   qkv, gate_up: 1/s into the preceding RMSNorm gain, s into W's columns;
//   down: 1/s into the rows of up (down_in = SiLU(gate) ⊙ up is linear in
//         up), s into W_down's columns.
#ifndef SPIKESERVE_RUNTIME_MODEL_SMOOTHING_H_
#define SPIKESERVE_RUNTIME_MODEL_SMOOTHING_H_

#include <map>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/model/model_config.h"
#include "runtime/model/site.h"
#include "runtime/model/site_rows.h"
#include "runtime/model/weights.h"

namespace spikeserve {

// s_j from activation channel maxima `act_max` [K] and the weight matrix W
// [N][K] of the site (its column maxima). Channels with a zero maximum get
// s = 1. s is clamped to [1e-5, 1e5].
std::vector<float> SmoothScales(absl::Span<const float> act_max,
                                const WeightRows& w, float alpha);
inline std::vector<float> SmoothScales(absl::Span<const float> act_max,
                                       const Matrix& w, float alpha) {
  return SmoothScales(act_max, MatrixRows(w), alpha);
}

// Checks `scales` (site -> s [K]) and folds 1/s into the norm gains of
// `weights`; the matrices take their side row by row as they are read
// (SmoothingTransform). Site o cannot be smoothed (no linear producer to
// absorb 1/s): InvalidArgument.
absl::Status ApplySmoothing(const ModelConfig& config,
                            const std::map<SiteKey, std::vector<float>>& scales,
                            ModelWeights* weights);

// The matrix side of `scales` for site `key`: W's columns times its s, and
// for gate_up the up rows divided by down's s.
RowTransform SmoothingTransform(
    const ModelConfig& config,
    const std::map<SiteKey, std::vector<float>>& scales, const SiteKey& key);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_SMOOTHING_H_
