// W8A8 linear layer on oneDNN: s8 activations x s8 weights -> s32, then our
// own epilogue y = acc · s_x[row] · s_w[n] in FP32.
//
// Following toolchain.md: weights are quantized per output channel and
// reordered once into the blocked layout oneDNN chose; one primitive per
// row-count bucket (scales and M fixed at creation, which keeps the fast
// brg:avx512_core_vnni kernel), created lazily and cached process-wide
// since it depends only on the shape; per-row activation scales applied in
// the epilogue (a {M,1} scale post-op would fall back to a reference
// kernel).
#ifndef SPIKESERVE_RUNTIME_INT8_LINEAR_H_
#define SPIKESERVE_RUNTIME_INT8_LINEAR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/linear.h"
#include "runtime/quantize.h"

namespace spikeserve {

// Rounds a row count up to the bucket whose primitive serves it: exact up
// to 16 (decode batches), then multiples of 16 (at most 15 padded rows).
int RowBucket(int m);

// The oneDNN implementation name chosen for an s8 matmul of this shape,
// e.g. "brg:avx512_core_vnni". FailedPrecondition if it is a reference
// ("ref...") kernel, which would be ~1000x slower.
absl::StatusOr<std::string> Int8MatmulImpl(int m, int k, int n);

// Creates (and runs once, since a first execution costs ~20x the steady
// state) the primitive of every row bucket up to `max_rows` for a K x N
// int8 matmul, checking each is a non-reference kernel whose blocked weight
// layout equals the M = 1 one (weights are reordered only once). Returns
// the implementation name.
absl::StatusOr<std::string> WarmUpInt8Matmul(int k, int n, int max_rows);

class Int8Linear final : public Linear {
 public:
  struct Options {
    ActQuantMode mode = ActQuantMode::kPerTensorDynamic;
    float static_absmax = 0;   // kPerTensorStatic: calibrated input absmax
    bool keep_plain_weights = false;  // keep [N][K] int8 copy (tests)
  };

  // Quantizes `w` ([N][K] FP32) per output channel. Fails if oneDNN would
  // pick a reference kernel.
  static absl::StatusOr<std::unique_ptr<Int8Linear>> Create(
      const Matrix& w, const Options& options);

  void Forward(const LinearInput& in, float* y) const override;
  int in_features() const override { return k_; }
  int out_features() const override { return n_; }

  // Per-output-channel weight scales [N] (absmax_row / 127).
  const std::vector<float>& weight_scales() const { return w_scale_; }
  // [N][K] quantized weights; empty unless keep_plain_weights.
  const std::vector<int8_t>& plain_weights() const { return w_plain_; }

  // The int32 accumulators ([m][N]), quantized activation rows ([m][K]) and
  // row scales of the last Forward on this thread, for exactness tests.
  static const std::vector<int32_t>& last_accumulators();
  static const std::vector<int8_t>& last_quantized_input();
  static const std::vector<float>& last_row_scales();

  size_t weight_bytes() const { return w_blocked_.size() + 4 * w_scale_.size(); }

 private:
  Int8Linear() = default;

  int k_ = 0, n_ = 0;
  Options options_;
  std::vector<float> w_scale_;      // [N]
  std::vector<int8_t> w_plain_;     // [N][K], optional
  std::vector<uint8_t> w_blocked_;  // oneDNN's blocked layout
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_INT8_LINEAR_H_
