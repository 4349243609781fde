// W8A8 linear layer: s8 activations x s8 weights -> s32, then the epilogue
// y = acc · s_x[row] · s_w[n] in FP32, on our packed-weight kernels
// (int8_gemm_packed.h; every batch on AVX2 and AVX-512 VNNI) or oneDNN.
//
// Weights are quantized per output channel and packed or reordered once
// (see onednn_matmul.h for oneDNN's primitive rules). Per-row activation scales
// are applied in the epilogue: a {M,1} scale post-op would fall back to a
// reference kernel (toolchain.md).
#ifndef SPIKESERVE_RUNTIME_LINEAR_INT8_LINEAR_H_
#define SPIKESERVE_RUNTIME_LINEAR_INT8_LINEAR_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/linear/int8_gemm_packed.h"
#include "runtime/linear/linear.h"
#include "runtime/linear/onednn_matmul.h"
#include "runtime/linear/quantize.h"
#include "runtime/linear/weight_rows.h"

namespace spikeserve {

// The oneDNN implementation of an s8 matmul of this shape (see
// onednn_matmul.h); kept for tests and logs.
absl::StatusOr<std::string> Int8MatmulImpl(int m, int k, int n);
// Creates, checks and runs once every row-bucket primitive up to max_rows.
absl::StatusOr<std::string> WarmUpInt8Matmul(int k, int n, int max_rows);

class Int8Linear final : public Linear {
 public:
  struct Options {
    ActQuantMode mode = ActQuantMode::kPerTensorDynamic;
    float static_absmax = 0;  // kPerTensorStatic: calibrated input absmax
    bool keep_plain_weights = false;  // keep [N][K] int8 copy (tests)
    // Batches of at most this many rows run on our packed-weight kernel
    // (int8_gemm_packed.h: AVX-512 VNNI, or AVX2 on CPUs without VNNI)
    // instead of oneDNN (-1: DefaultPackedMaxRows(); 0: never;
    // kEveryBatch: always, and oneDNN holds no copy). Larger batches use
    // oneDNN.
    int packed_max_rows = -1;
  };
  static constexpr int kEveryBatch = std::numeric_limits<int>::max();
  // The default of packed_max_rows for the kernel this CPU runs, measured
  // with bench/linear_bench (see int8_linear.cc): kEveryBatch with AVX2 or
  // AVX-512 VNNI, AMX tiles from kInt8AmxMinRows rows where the CPU has
  // them (our kernels are faster at every batch size, and exact with 8-bit
  // weights); 0 where neither kernel runs.
  static int DefaultPackedMaxRows();
  // For logs: the packed kernel this CPU runs and up to how many rows,
  // e.g. "avx2 for every batch", "avx512_vnni for every batch, AMX tiles
  // from 8 rows (...)", or "none". Per CPU: a linear whose width is not a
  // multiple of 64 stays on the VNNI kernel on AMX CPUs too.
  static std::string PackedKernelDescription();
  // The packed kernel's ISA name ("avx2", "avx512_vnni", "avx512_vnni+amx"),
  // or "none".
  static std::string PackedKernelName();

  // Quantizes `w` ([N][K], FP32 rows on demand) per output channel. Fails
  // if oneDNN would pick a reference kernel.
  static absl::StatusOr<std::unique_ptr<Int8Linear>> Create(
      const WeightRows& w, const Options& options);
  static absl::StatusOr<std::unique_ptr<Int8Linear>> Create(
      const Matrix& w, const Options& options) {
    return Create(MatrixRows(w), options);
  }

  void Forward(const LinearInput& in, float* y) const override;
  int in_features() const override { return k_; }
  int out_features() const override { return n_; }
  // The packed kernel's batches only (up to packed_max_rows).
  int TeamUnits(int m) const override;
  void TeamPrepare(const LinearInput& in) const override;
  void TeamRun(int u0, int u1, float* y) const override;
  absl::Span<const uint8_t> TeamUnitWeights(int m, int u0,
                                            int u1) const override;

  // Per-output-channel weight scales [N] (absmax_row / 127, or / 63 where
  // oneDNN's non-VNNI kernels run some batches: Int8WeightQmax()).
  const std::vector<float>& weight_scales() const { return w_scale_; }
  // [N][K] quantized weights; empty unless keep_plain_weights.
  const std::vector<int8_t>& plain_weights() const { return w_plain_; }

  // The quantized activation rows ([m][K]) and row scales of the last
  // Forward on this thread, for exactness tests.
  static absl::Span<const int8_t> last_quantized_input();
  static absl::Span<const float> last_row_scales();

  size_t weight_bytes() const override {
    return w_blocked_.size() + w_packed_.bytes() +
           4 * (w_scale_.size() + w_sum_.size());
  }

 private:
  Int8Linear() = default;
  // acc[mb][N] = xq[mb][K] · Wᵀ on oneDNN, exact int32.
  void RunOneDnn(int mb, const int8_t* xq, int32_t* acc) const;

  int k_ = 0, n_ = 0;
  Options options_;
  std::vector<float> w_scale_;         // [N]
  std::vector<int8_t> w_plain_;        // [N][K], optional
  HugePageVector<uint8_t> w_blocked_;  // oneDNN's blocked layout
  // Our kernel for batches up to packed_max_rows_.
  int packed_max_rows_ = 0;
  Int8PackedWeights w_packed_;
  std::vector<int32_t> w_sum_;  // [N] row sums (oneDNN's u8 form)
  // The input TeamPrepare quantized, for TeamRun on any thread.
  struct Prepared {
    int m = 0;
    std::vector<float> row_scale;
    std::vector<int8_t> xq;
    std::vector<uint8_t> xu;  // as the packed kernel reads the rows
  };
  mutable Prepared team_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_INT8_LINEAR_H_
