#include "runtime/linear/int8_linear.h"

#include <cmath>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "runtime/linear/activation_quant.h"
#include "runtime/linear/int8_gemm_amx.h"
#include "runtime/linear/parallel_rows.h"

namespace spikeserve {
namespace {

// Row loops fork OpenMP threads only for batches this large (prefill);
// for decode-sized batches fork/join costs more than it saves.
constexpr int kParallelRows = 32;

// Scratch shared by every Int8Linear on a thread: one model's 4 x layers
// linears would otherwise each hold (and first-touch) their own buffers.
// Buffers only grow: resizing them to each linear's width would zero-fill
// megabytes per call.
struct Scratch {
  std::vector<int8_t> xq;        // [bucket][K] quantized rows
  std::vector<uint8_t> xu;       // [bucket][K] xq + 128 (u8 oneDNN kind)
  std::vector<int32_t> acc;      // [bucket][N] accumulators
  std::vector<float> row_scale;  // [m]
  int m = 0, k = 0;              // shape of the last call
};

template <typename T>
T* Grow(std::vector<T>* v, size_t n) {
  if (v->size() < n) v->resize(n);
  return v->data();
}
Scratch& GetScratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

absl::Span<const int8_t> Int8Linear::last_quantized_input() {
  const Scratch& s = GetScratch();
  return absl::MakeConstSpan(s.xq.data(), size_t(s.m) * s.k);
}
absl::Span<const float> Int8Linear::last_row_scales() {
  const Scratch& s = GetScratch();
  return absl::MakeConstSpan(s.row_scale.data(), size_t(s.m));
}

absl::StatusOr<std::string> Int8MatmulImpl(int m, int k, int n) {
  return MatmulImpl(Int8Kind(), m, k, n);
}

absl::StatusOr<std::string> WarmUpInt8Matmul(int k, int n, int max_rows) {
  return WarmUpMatmul(Int8Kind(), k, n, max_rows);
}

namespace {
// The packed kernel this CPU runs: VNNI where oneDNN's int8 kernels use it
// (a cap by ONEDNN_MAX_CPU_ISA moves both to the AVX2 path), AVX2
// otherwise.
std::optional<Int8KernelIsa> PackedIsa() {
  if (Int8MatmulHasVnni()) {
    if (Int8KernelSupported(Int8KernelIsa::kAvx512Vnni)) {
      return Int8KernelIsa::kAvx512Vnni;
    }
    return std::nullopt;  // VNNI of another kind (e.g. AVX10 without BW)
  }
  if (Int8KernelSupported(Int8KernelIsa::kAvx2)) return Int8KernelIsa::kAvx2;
  return std::nullopt;
}
}  // namespace

// Measured with 2 threads, build/bench/linear_bench
// --benchmark_filter='Int8(OneDnn|Packed)':
// - AVX2 against oneDNN's non-VNNI gemm in its u8 form (Zen 2, 2026-12-05,
//   GOPS = 2 x multiply-adds/s, sign-trick kernel): the kernel is faster or
//   even at every batch size (576x3072: 1 row 127 vs 32 GOPS, 8 rows 162 vs
//   113, 64 rows 174 vs 169, 512 rows 177 vs 174; 1536x576 at 512 rows 157
//   vs 159), and it is
//   exact with 8-bit weights where oneDNN's u8 form needs 7-bit ones (half
//   the KL from FP32 on the default plan, docs/accuracy.md). So on AVX2 it
//   runs every batch and oneDNN holds no copy of the weights. (On Zen 3,
//   before the sign trick, oneDNN led from 16 rows: 576x960 142 vs 93 us.)
//   Since 2026-12-07 the AVX2 kernel keeps its sums in columns and takes 3
//   rows and more in its int16 form (int8_gemm_packed.h); against the
//   sign-trick kernel with row blocks of 4, Zen 3, 2 threads, best of 7
//   alternating rounds: 576x960 at 1 row 180 vs 159 GOPS, 4 rows 236 vs
//   199, 16 rows 271 vs 208, 512 rows 273 vs 209; 576x3072 at 512 rows 270
//   vs 212; 1536x576 at 512 rows 267 vs 225.
// - AVX-512 VNNI against oneDNN's brg:avx512_core_vnni (Ice Lake Xeon,
//   2026-12-06, GOPS as above): since the kernel keeps its sums in columns
//   (int8_gemm_vnni.h) it is faster at every batch size: 576x960 at 1 row
//   5.7 vs 8.7 us, 4 rows 666 vs 324 GOPS, 16 rows 848 vs 565, 64 rows 761
//   vs 722, 512 rows 1014 vs 750; 576x3072 at 512 rows 1017 vs 668;
//   1536x576 at 512 rows 853 vs 756. So it runs every batch there too, and
//   oneDNN holds no copy. (Its earlier row layout won at 1 row only, and
//   oneDNN kept a second copy of every INT8 weight for the larger batches.)
// - AMX (Xeon, 2026-12-07, GOPS as above): our kernel too, with batches
//   from kInt8AmxMinRows rows on AMX tiles straight from the VNNI packing
//   (int8_gemm_amx.h). Against oneDNN's AMX brgemm, 576x960: 1 row 292 vs
//   150 GOPS, 16 rows 871 vs 519, 64 rows 1878 vs 1250, 512 rows 1722 vs
//   1488; 576x3072 at 512 rows 1870 vs 1770; 1536x576 at 512 rows 1439 vs
//   1664 (oneDNN ahead there). oneDNN's brgemm also wanted another weight
//   layout for M > 1 than for M = 1 at small shapes, so it would need a
//   second copy; ours holds one.
int Int8Linear::DefaultPackedMaxRows() { return PackedIsa() ? kEveryBatch : 0; }

namespace {
// Whether batches from kInt8AmxMinRows rows of a K-wide linear run on AMX
// tiles: where the CPU has them and oneDNN's ISA is not capped below AMX
// (the cap moves every INT8 kernel to the ISA it names).
bool UseAmx(Int8KernelIsa isa, int k) {
  return isa == Int8KernelIsa::kAvx512Vnni && Int8MatmulHasAmx() &&
         Int8AmxSupported(k);
}
}  // namespace

std::string Int8Linear::PackedKernelName() {
  const std::optional<Int8KernelIsa> isa = PackedIsa();
  if (!isa) return "none";
  // K = 64 stands for every width that is a multiple of 64.
  if (UseAmx(*isa, 64)) return absl::StrCat(Int8KernelIsaName(*isa), "+amx");
  return Int8KernelIsaName(*isa);
}

std::string Int8Linear::PackedKernelDescription() {
  const std::optional<Int8KernelIsa> isa = PackedIsa();
  if (!isa) return "none";
  const int rows = DefaultPackedMaxRows();
  if (rows == kEveryBatch && UseAmx(*isa, 64)) {
    return absl::StrCat(Int8KernelIsaName(*isa),
                        " for every batch, AMX tiles from ", kInt8AmxMinRows,
                        " rows (widths that are multiples of 64)");
  }
  if (rows == kEveryBatch) {
    return absl::StrCat(Int8KernelIsaName(*isa), " for every batch");
  }
  return absl::StrCat(Int8KernelIsaName(*isa), " up to ", rows,
                      rows == 1 ? " row" : " rows");
}

absl::StatusOr<std::unique_ptr<Int8Linear>> Int8Linear::Create(
    const WeightRows& w, const Options& options) {
  auto lin = std::unique_ptr<Int8Linear>(new Int8Linear());
  lin->k_ = w.cols();
  lin->n_ = w.rows();
  lin->options_ = options;
  if (options.mode == ActQuantMode::kPerTensorStatic &&
      !(options.static_absmax > 0 && std::isfinite(options.static_absmax))) {
    return absl::InvalidArgumentError(
        "int8 linear: static mode needs a positive calibrated absmax");
  }
  const int K = w.cols(), N = w.rows();
  const std::optional<Int8KernelIsa> isa = PackedIsa();
  if (isa) {
    lin->packed_max_rows_ = options.packed_max_rows < 0
                                ? DefaultPackedMaxRows()
                                : options.packed_max_rows;
  }
  // oneDNN runs the batches our kernel does not (none on AVX2 by default).
  const bool use_onednn = lin->packed_max_rows_ != kEveryBatch;
  // Per-output-channel symmetric quantization of W [N][K] to [-qmax, qmax]:
  // 127, or 63 where oneDNN's non-VNNI int8 kernels would saturate and run
  // some batches (see Int8WeightQmax; our kernels are exact at 127).
  const float qmax = use_onednn ? float(Int8WeightQmax()) : 127.0f;
  std::vector<int8_t> plain(size_t(N) * K);
  lin->w_scale_.resize(N);
  // The first row with an infinite or NaN weight, if any: its channel's
  // scale would be NaN, so every output of that channel.
  int bad_row = N;
#pragma omp parallel
  {
    std::vector<float> row(K);
#pragma omp for schedule(static) reduction(min : bad_row)
    for (int r = 0; r < N; ++r) {
      w.Row(r, row.data());
      const float amax = AbsMax(row.data(), K);
      if (!std::isfinite(amax)) bad_row = std::min(bad_row, r);
      const float s = amax > 0 && std::isfinite(amax) ? amax / qmax : 1.0f;
      lin->w_scale_[r] = s;
      QuantizeRow(row.data(), K, 1.0f / s, &plain[size_t(r) * K]);
    }
  }
  w.Done(0, N);
  if (bad_row < N) {
    return absl::InvalidArgumentError(
        absl::StrCat("int8 linear: weight row ", bad_row,
                     " holds an infinite or NaN value"));
  }
  if (use_onednn) {
    // Reorder once into oneDNN's blocked layout (the same for every row
    // bucket: WarmUpMatmul checks it).
    absl::StatusOr<HugePageVector<uint8_t>> blocked =
        ReorderWeights(Int8Kind(), plain.data(), K, N);
    if (!blocked.ok()) return blocked.status();
    lin->w_blocked_ = *std::move(blocked);
    if (Int8Kind() == MatmulKind::kU8S8S32) {
      lin->w_sum_ = Int8RowSums(plain.data(), N, K);
    }
  }
  if (lin->packed_max_rows_ > 0) {
    lin->w_packed_ =
        PackInt8Weights(plain.data(), N, K, *isa, lin->w_scale_.data());
    if (UseAmx(*isa, K)) lin->w_packed_.amx_min_rows = kInt8AmxMinRows;
  }
  if (options.keep_plain_weights) lin->w_plain_ = std::move(plain);
  return lin;
}

void Int8Linear::RunOneDnn(int mb, const int8_t* xq, int32_t* acc) const {
  const MatmulKind kind = Int8Kind();
  if (kind == MatmulKind::kS8S8S32) {
    RunMatmul(kind, mb, k_, n_, xq, w_blocked_, acc);
    return;
  }
  // u8 = s8 + 128 (the bucket's padding rows included), then
  // acc = Σ (x+128)·w - 128·Σ w.
  uint8_t* xu = Grow(&GetScratch().xu, size_t(mb) * k_);
  OffsetToU8(xq, size_t(mb) * k_, xu);
  RunMatmul(kind, mb, k_, n_, xu, w_blocked_, acc);
  SubtractOffset(w_sum_.data(), mb, n_, acc);
}

void Int8Linear::Forward(const LinearInput& in, float* y) const {
  const int m = in.m, K = k_, N = n_;
  const int mb = RowBucket(m);
  Scratch& sc = GetScratch();
  sc.m = m;
  sc.k = K;
  float* row_scale_ = Grow(&sc.row_scale, size_t(m));
  int8_t* xq_ = Grow(&sc.xq, size_t(mb) * K);
  // 1-2. Row scales, then the rows quantized into a bucket-sized buffer
  // (padding zeroed below for oneDNN).
  QuantizeActivations(in, K, options_.mode, options_.static_absmax, row_scale_,
                      xq_);
  // 3. s8 x s8 -> s32: our packed kernel for the batch sizes it is faster
  // at, dequantizing in its own epilogue (the same float operations as
  // step 4)...
  if (m <= packed_max_rows_) {
    Int8GemmPackedDequant(xq_, m, w_packed_, row_scale_, y);
    return;
  }
  // ... or oneDNN (the VNNI kernel where the CPU has it) on the whole
  // bucket, whose padding rows are zero.
  std::memset(xq_ + size_t(m) * K, 0, size_t(mb - m) * K);
  int32_t* acc_ = Grow(&sc.acc, size_t(mb) * N);
  RunOneDnn(mb, xq_, acc_);
  // 4. Epilogue: dequantize with the row and channel scales.
  ParallelRows(m, m >= kParallelRows, [&](int r) {
    const float sx = row_scale_[r];
    const int32_t* a = acc_ + size_t(r) * N;
    float* yr = y + size_t(r) * N;
    for (int n = 0; n < N; ++n) yr[n] = float(a[n]) * (sx * w_scale_[n]);
  });
}

int Int8Linear::TeamUnits(int m) const {
  return m <= packed_max_rows_ ? Int8PackedBlocks(w_packed_) : 0;
}

void Int8Linear::TeamPrepare(const LinearInput& in) const {
  const int m = in.m;
  team_.m = m;
  float* row_scale = Grow(&team_.row_scale, size_t(m));
  int8_t* xq = Grow(&team_.xq, size_t(m) * k_);
  QuantizeActivations(in, k_, options_.mode, options_.static_absmax, row_scale,
                      xq);
  uint8_t* xu = Grow(&team_.xu, size_t(m) * Int8KernelRowBytes(w_packed_));
  Int8KernelRows(xq, m, w_packed_, xu);
}

void Int8Linear::TeamRun(int u0, int u1, float* y) const {
  Int8GemmPackedDequantBlocks(team_.xu.data(), team_.m, w_packed_,
                              team_.row_scale.data(), y, u0, u1);
}

absl::Span<const uint8_t> Int8Linear::TeamUnitWeights(int m, int u0,
                                                      int u1) const {
  const size_t b = Int8PackedBlockBytes(w_packed_);
  return absl::MakeConstSpan(
      reinterpret_cast<const uint8_t*>(w_packed_.data.data()) + size_t(u0) * b,
      size_t(u1 - u0) * b);
}

}  // namespace spikeserve
