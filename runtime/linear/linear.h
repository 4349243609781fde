// Linear layers y = x·Wᵀ behind one interface, so that the model can route
// each module to FP32, BF16 or INT8 (W8A8) kernels by a precision plan.
#ifndef SPIKESERVE_RUNTIME_LINEAR_LINEAR_H_
#define SPIKESERVE_RUNTIME_LINEAR_LINEAR_H_

#include <cstdint>
#include <memory>

#include "absl/types/span.h"
#include "runtime/linear/weight_rows.h"

namespace spikeserve {

// The input of one linear call over a batch.
struct LinearInput {
  const float* x = nullptr;  // [m][in_features], row-major
  int m = 0;
  // Rows of each sequence: sequence g owns rows [seq_bounds[g],
  // seq_bounds[g+1]); size = sequences + 1, first 0, last m. Per-tensor
  // activation scales are taken per sequence, never across sequences, so a
  // request's result does not depend on its batch neighbours.
  absl::Span<const int> seq_bounds;
  // Optional [m] row absmax max_j |x[r][j]|, when the caller computed it
  // (for spike statistics); saves the quantizer a pass.
  const float* row_absmax = nullptr;
};

class Linear {
 public:
  virtual ~Linear() = default;
  // y: [m][out_features]. Thread-compatible: implementations keep scratch
  // buffers, so one caller at a time (the engine thread).
  virtual void Forward(const LinearInput& in, float* y) const = 0;
  virtual int in_features() const = 0;
  virtual int out_features() const = 0;
  // Bytes of weights this kernel holds (0 when it reads them elsewhere).
  virtual size_t weight_bytes() const = 0;

  // The team form of Forward, for threads that already run in one OpenMP
  // parallel region (a decode step, model_team.cc) and split the work
  // themselves: one thread calls TeamPrepare (it quantizes x into the
  // kernel's own buffers); once that is visible to them, any threads call
  // TeamRun on disjoint ranges of units of output columns until all
  // TeamUnits(m) are done. The outputs equal Forward's. A kernel without
  // this form has TeamUnits 0.
  virtual int TeamUnits(int m) const { return 0; }
  virtual void TeamPrepare(const LinearInput& in) const {}
  virtual void TeamRun(int u0, int u1, float* y) const {}
  // The weight bytes units [u0, u1) of m rows read, one contiguous range
  // in order (to read them ahead while another thread works).
  virtual absl::Span<const uint8_t> TeamUnitWeights(int m, int u0,
                                                    int u1) const {
    return {};
  }
};

// FP32 weights, the fixed-order kernel (fixed_order_gemm.h): a row's output
// does not depend on the rows beside it, as oneDNN's sgemm's does. Does not
// own the matrix: it lives in the model's ModelWeights.
class Fp32Linear final : public Linear {
 public:
  explicit Fp32Linear(const Matrix* w) : w_(w) {}
  void Forward(const LinearInput& in, float* y) const override;
  int in_features() const override { return w_->cols; }
  int out_features() const override { return w_->rows; }
  size_t weight_bytes() const override {
    return w_->data.size() * sizeof(float);
  }

 private:
  const Matrix* w_;
};

// FP32 rows produced on every call from a WeightRows (a GGUF tensor in the
// mmap): the FP32 reference of a quantized site (the QFeP prefix,
// evaluation's reference, calibration) without holding an FP32 copy. Each
// call converts blocks of output rows into a scratch buffer and runs the
// fixed-order kernel on them, so it costs a dequantization of W per call: for
// reference forwards, not for serving. The same kernel as Fp32Linear: an FP32
// reference forward equals the FP32 model's bit for bit.
class StreamedFp32Linear final : public Linear {
 public:
  explicit StreamedFp32Linear(const WeightRows* w) : w_(w) {}
  void Forward(const LinearInput& in, float* y) const override;
  int in_features() const override { return w_->cols(); }
  int out_features() const override { return w_->rows(); }
  size_t weight_bytes() const override { return 0; }

 private:
  const WeightRows* w_;
};

// Scalar reference for tests: y[i][n] = Σ_k x[i][k] · W[n][k], in double.
void ReferenceLinear(const float* x, int m, const Matrix& w, float* y);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_LINEAR_H_
