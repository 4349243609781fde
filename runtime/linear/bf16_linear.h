// BF16-weight linear layer: weights rounded to bf16 once (half the bytes of
// FP32, about 3 significant digits), activations kept in FP32, products
// accumulated in FP32 by the fixed-order kernel (fixed_order_gemm.h), so
// that a row's output does not depend on the rows beside it. Decode reads
// half of FP32's bytes; every CPU with AVX2 runs it (no BF16 instructions
// needed). A QFeM module's lighter variant (method.md §4).
#ifndef SPIKESERVE_RUNTIME_LINEAR_BF16_LINEAR_H_
#define SPIKESERVE_RUNTIME_LINEAR_BF16_LINEAR_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/linear/huge_pages.h"
#include "runtime/linear/linear.h"

namespace spikeserve {

// float -> bf16 bits, round to nearest even (NaN stays NaN).
uint16_t FloatToBf16(float f);

class Bf16Linear final : public Linear {
 public:
  static absl::StatusOr<std::unique_ptr<Bf16Linear>> Create(
      const WeightRows& w);
  static absl::StatusOr<std::unique_ptr<Bf16Linear>> Create(const Matrix& w) {
    return Create(MatrixRows(w));
  }
  void Forward(const LinearInput& in, float* y) const override;
  int in_features() const override { return k_; }
  int out_features() const override { return n_; }
  size_t weight_bytes() const override { return w_.size() * sizeof(uint16_t); }

 private:
  Bf16Linear() = default;
  int k_ = 0, n_ = 0;
  HugePageVector<uint16_t> w_;  // bf16 bits [N][K]
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_BF16_LINEAR_H_
