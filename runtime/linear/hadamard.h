// Orthonormal Hadamard transforms for rotating activations and weights
// (QuaRot-style): x·W = (x·H)(Hᵀ·W) spreads a spike over all channels.
//
// Sizes n = m · 2^k with m in {1, 12, 20}: H = (H_m ⊗ H_{2^k}) / sqrt(n),
// H_m from Paley's construction (q = 11, 19), H_{2^k} by Sylvester, applied
// as a fast Walsh-Hadamard transform plus an m x m mix. SmolLM2's FFN width
// 1536 = 12 · 128.
#ifndef SPIKESERVE_RUNTIME_LINEAR_HADAMARD_H_
#define SPIKESERVE_RUNTIME_LINEAR_HADAMARD_H_

#include <vector>

#include "absl/status/statusor.h"

namespace spikeserve {

// Paley's Hadamard matrix of order q + 1 (q prime, q % 4 == 3), ±1 entries,
// row-major; empty for other q.
std::vector<int> PaleyHadamard(int q);

class HadamardTransform {
 public:
  // InvalidArgument when n is not m · 2^k with m in {1, 12, 20}.
  static absl::StatusOr<HadamardTransform> Create(int n);

  // In place, for `rows` row vectors of width n: x ← x · H. H is symmetric
  // for m = 1 only, so the inverse is ApplyTranspose.
  void Apply(float* x, int rows) const;
  // x ← x · Hᵀ (the inverse, H being orthonormal).
  void ApplyTranspose(float* x, int rows) const;
  int size() const { return n_; }

 private:
  void Run(float* x, int rows, bool transpose) const;
  int n_ = 0, m_ = 1, p2_ = 1;
  std::vector<int> small_;  // m x m, ±1
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_HADAMARD_H_
