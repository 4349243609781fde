// GPTQ for W4 groups (Frantar et al., "GPTQ: Accurate Post-Training
// Quantization for Generative Pre-trained Transformers", 2023).
//
// A site's output error from quantizing row n of W is e = Σ_k x_k·Δ_k; over
// calibration activations its mean square is Δᵀ·H·Δ with H = E[xxᵀ]. The
// importance-weighted groups (w4_clip_search.h) keep H's diagonal, so each
// weight's error stands alone. GPTQ keeps all of H: it quantizes the
// columns of a row in order and, after each, moves the rounding error onto
// the columns not yet quantized in the way that least raises Δᵀ·H·Δ
// (the optimal brain surgeon update), so neighbouring weights cancel each
// other's errors where their channels are correlated.
//
// Rows are independent: row n's updates only read row n. Each group's half
// scale (and minimum) is chosen by the importance-weighted search with H's
// diagonal: when the column order reaches the group, from the row as
// updated so far, or up front with act_order (below). The result is an ordinary
// W4Plain: the kernels, format and bytes are those of round-to-nearest; only
// the codes and scales differ.
#ifndef SPIKESERVE_RUNTIME_QUANT_GPTQ_H_
#define SPIKESERVE_RUNTIME_QUANT_GPTQ_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/linear/w4_gemm.h"
#include "runtime/linear/weight_rows.h"

namespace spikeserve {

struct GptqOptions {
  int group = 32;  // 32, 64 or 128; must divide K
  bool with_min = false;
  // Added to H's diagonal, as a fraction of its mean diagonal: keeps H
  // positive definite where calibration saw fewer independent rows than
  // channels, and damps updates along directions the calibration text
  // barely explored. The paper's 1% over-fits 4096 calibration tokens on
  // SmolLM2-135M: every site W4A8, KJV perplexity 7.77 / 7.62 / 7.47 /
  // 7.69 at 0.01 / 0.1 / 0.3 / 1 (docs/w4a8.md).
  double damp = 0.3;
  // Quantize the columns in decreasing order of H's diagonal (the paper's
  // "act order"): the loud channels are rounded first, while the most
  // columns remain to absorb their errors. Each group's scale (and
  // minimum) is then chosen up front from the row as it is ("static
  // groups"), since a group's columns no longer come together.
  bool act_order = false;
};

// U, upper triangular [K][K] row-major, with Uᵀ·U = (H + damp)⁻¹, where
// H = gram [K][K] (symmetric; Σ_t x_t·x_tᵀ over calibration rows, any
// scale: GPTQ is invariant to it). Channels that never carried a value
// (zero diagonal) get H_kk = 1 so that H stays invertible. The damping
// grows tenfold (up to 4 times) while the Cholesky factorisation fails.
// InvalidArgument when gram is not K·K finite values.
absl::StatusOr<std::vector<double>> GptqInverseFactor(
    absl::Span<const float> gram, int k, double damp);

// Quantizes `w` ([N][K], FP32 rows on demand) to 4-bit groups by GPTQ with
// the calibration Gram matrix `gram` ([K][K], as above). InvalidArgument
// naming the reason for a group that is not 32/64/128 or does not divide
// K, or a gram of the wrong size or with non-finite values.
absl::StatusOr<W4Plain> GptqQuantize(const WeightRows& w,
                                     absl::Span<const float> gram,
                                     const GptqOptions& options);

// Σ over rows of Δᵀ·gram·Δ, Δ = w - dequantized `q` (the output error the
// calibration rows would see, summed): for tests and reports.
double W4OutputError(const WeightRows& w, const W4Plain& q,
                     absl::Span<const float> gram);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_QUANT_GPTQ_H_
