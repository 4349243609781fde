// W4A8 linear layer: 4-bit weights in groups along K, INT8 activations
// (the three modes of the W8A8 linear), on our own kernels (w4_gemm.h).
//
// The weights are held once, packed for the kernel this CPU runs: AVX-512
// VNNI where oneDNN's int8 kernels use it too (a cap by ONEDNN_MAX_CPU_ISA
// moves both to AVX2), AVX2 otherwise. Every batch size runs on it: at
// decode it streams 4.125-4.5 bits per weight instead of 8.
#ifndef SPIKESERVE_RUNTIME_LINEAR_W4A8_LINEAR_H_
#define SPIKESERVE_RUNTIME_LINEAR_W4A8_LINEAR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/linear/linear.h"
#include "runtime/linear/quantize.h"
#include "runtime/linear/w4_gemm.h"
#include "runtime/linear/weight_rows.h"

namespace spikeserve {

class W4A8Linear final : public Linear {
 public:
  struct Options {
    ActQuantMode mode = ActQuantMode::kPerTokenDynamic;
    float static_absmax = 0;  // kPerTensorStatic: calibrated input absmax
    int group = 128;          // 32, 64 or 128; must divide K
    // Create: asymmetric groups with a minimum (QuantizeW4RowMin) instead
    // of symmetric ones (QuantizeW4Row).
    bool with_min = false;
    // Create: the mean square of each input channel on calibration
    // activations, [K] (empty = round-to-nearest from each group's
    // extremes). Each group's scale (and minimum) is then chosen to minimise
    // the importance-weighted weight error (w4_clip_search.h).
    absl::Span<const float> importance;
  };
  // The largest group size of 128, 64 and 32 that divides k; 0 if none.
  static int GroupFor(int k);
  // The kernel this CPU runs, e.g. "avx512_vnni", or "none" (no AVX2).
  static std::string KernelDescription();

  // Quantizes `w` ([N][K], FP32 rows on demand) in groups: round-to-nearest
  // from the extremes (QuantizeW4Row), or with options.importance the
  // weighted clipping search. InvalidArgument naming the reason when the
  // group does not divide K or is not 32/64/128, or the importance is not K
  // finite values >= 0; FailedPrecondition on a CPU without AVX2.
  static absl::StatusOr<std::unique_ptr<W4A8Linear>> Create(
      const WeightRows& w, const Options& options);
  // Serves 4-bit weights as they are (e.g. a GGUF Q4_0 or Q4_1 tensor):
  // no requantization; options.group is taken from `w`.
  static absl::StatusOr<std::unique_ptr<W4A8Linear>> FromPlain(
      const W4Plain& w, const Options& options);
  // The same from a source that stores its rows as 4-bit groups
  // (w.four_bit(), which must be set).
  static absl::StatusOr<std::unique_ptr<W4A8Linear>> FromStored(
      const WeightRows& w, const Options& options);

  void Forward(const LinearInput& in, float* y) const override;
  int in_features() const override { return packed_.k; }
  int out_features() const override { return packed_.n; }
  size_t weight_bytes() const override { return packed_.bytes(); }
  int TeamUnits(int m) const override;
  void TeamPrepare(const LinearInput& in) const override;
  void TeamRun(int u0, int u1, float* y) const override;
  absl::Span<const uint8_t> TeamUnitWeights(int m, int u0,
                                            int u1) const override;
  int group() const { return packed_.group; }
  bool has_min() const { return packed_.has_min; }
  // Whether Create chose the group scales with options.importance.
  bool importance_weighted() const { return importance_weighted_; }

 private:
  W4A8Linear() = default;

  Options options_;  // importance cleared: the span is the caller's
  bool importance_weighted_ = false;
  W4PackedWeights packed_;
  // A quantized input: rows, their scales [m], the rows [m][K] and their
  // group sums [m][K/G].
  struct Prepared {
    int m = 0;
    std::vector<float> row_scale;
    std::vector<int8_t> xq;
    std::vector<int32_t> sums;
  };
  void Quantize(const LinearInput& in, Prepared* p) const;
  // TeamPrepare's, for TeamRun on any thread.
  mutable Prepared team_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_W4A8_LINEAR_H_
