// Importance-weighted choice of each W4 group's scale (and minimum).
//
// A site's output error from quantizing row n of W is e = Σ_k x_k·Δ_k with
// Δ = w - ŵ; over calibration activations its mean square is Δᵀ·E[xxᵀ]·Δ.
// Keeping the diagonal, h_k = E[x_k²] (the input channel's mean square, as
// the site's matmul sees it: after smoothing and rotation), the error of a
// group is Σ_k h_k·Δ_k², and groups add up independently.
//
// Round-to-nearest from the group's extremes (QuantizeW4Row*) spends the
// scale on the largest weight even where its channel carries little, and
// rounds the weights of the loud channels coarsely to do so. Here each
// group tries a grid of clipped and widened scales (down to half the
// extremes), refines the best by weighted least squares for the codes it
// gives, and keeps the one with the smallest weighted error. The codes are
// then round-to-nearest for the chosen half scale (per weight that is
// optimal for any h ≥ 0), so the result is stored and served exactly as
// the unweighted one: only the scales (and minimums) differ.
// Round-to-nearest from the extremes is one of the candidates, so the
// weighted error is never larger than its.
#ifndef SPIKESERVE_RUNTIME_LINEAR_W4_CLIP_SEARCH_H_
#define SPIKESERVE_RUNTIME_LINEAR_W4_CLIP_SEARCH_H_

#include <cstdint>

namespace spikeserve {

// Symmetric groups (w = d·(u - 8)), as QuantizeW4Row, with the scale of
// each group of `group` weights of w[k] chosen to minimise
// Σ importance[k]·(w[k] - ŵ[k])². importance[k] >= 0 and finite; a group
// whose importance is all zero is weighted uniformly. Writes u[k] and
// scale[k / group] (half).
void QuantizeW4RowWeighted(const float* w, const float* importance, int k,
                           int group, uint8_t* u, uint16_t* scale);

// Asymmetric groups (w = d·u + mn), as QuantizeW4RowMin, with the scale and
// minimum chosen the same way. Writes u[k], scale and min [k / group].
void QuantizeW4RowMinWeighted(const float* w, const float* importance, int k,
                              int group, uint8_t* u, uint16_t* scale,
                              uint16_t* min);

// Σ importance[i]·(w[i] - ŵ[i])² over one group of n weights for the
// stored codes and half scale (and half minimum when `min` is not null):
// what the searches minimise, for tests and reports.
double W4GroupWeightedError(const float* w, const float* importance, int n,
                            const uint8_t* u, uint16_t scale,
                            const uint16_t* min);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_W4_CLIP_SEARCH_H_
