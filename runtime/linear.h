// Linear layers y = x·Wᵀ behind one interface, so that the model can route
// each module to FP32, BF16 or INT8 (W8A8) kernels by a precision plan.
#ifndef SPIKESERVE_RUNTIME_LINEAR_H_
#define SPIKESERVE_RUNTIME_LINEAR_H_

#include <memory>

#include "runtime/weights.h"

namespace spikeserve {

class Linear {
 public:
  virtual ~Linear() = default;
  // x: [m][in_features] row-major; y: [m][out_features]. Thread-compatible:
  // const, but implementations may use internal scratch, so one caller at a
  // time (the engine thread).
  virtual void Forward(const float* x, int m, float* y) const = 0;
  virtual int in_features() const = 0;
  virtual int out_features() const = 0;
};

// FP32 weights, oneDNN's sgemm (JIT AVX-512/AVX2 by CPUID at run time).
// Does not own the matrix: it lives in the model's ModelWeights.
class Fp32Linear final : public Linear {
 public:
  explicit Fp32Linear(const Matrix* w) : w_(w) {}
  void Forward(const float* x, int m, float* y) const override;
  int in_features() const override { return w_->cols; }
  int out_features() const override { return w_->rows; }

 private:
  const Matrix* w_;
};

// Scalar reference for tests: y[i][n] = Σ_k x[i][k] · W[n][k], in double.
void ReferenceLinear(const float* x, int m, const Matrix& w, float* y);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_H_
