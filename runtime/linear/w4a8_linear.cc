#include "runtime/linear/w4a8_linear.h"

#include <cmath>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/gguf/dequantize.h"
#include "runtime/linear/activation_quant.h"
#include "runtime/linear/onednn_matmul.h"
#include "runtime/linear/w4_clip_search.h"
#include "runtime/linear/w4_gemm_amx.h"

namespace spikeserve {
namespace {

// Whether batches from kW4AmxMinRows rows run on AMX tiles: where the CPU
// has them and oneDNN's ISA is not capped below AMX (the same cap moves the
// INT8 linears and the rest of W4A8 off their kernels).
bool UseAmx(W4KernelIsa isa) {
  return isa == W4KernelIsa::kAvx512Vnni && Int8MatmulHasAmx() &&
         W4AmxSupported();
}

std::optional<W4KernelIsa> KernelIsa() {
  if (Int8MatmulHasVnni() && W4KernelSupported(W4KernelIsa::kAvx512Vnni)) {
    return W4KernelIsa::kAvx512Vnni;
  }
  if (W4KernelSupported(W4KernelIsa::kAvx2)) return W4KernelIsa::kAvx2;
  return std::nullopt;
}

absl::Status CheckShape(int k, int group) {
  if (group == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "W4A8: no group size of 32, 64 or 128 divides the input width ", k));
  }
  if (group != 32 && group != 64 && group != 128) {
    return absl::InvalidArgumentError(absl::StrCat(
        "W4A8: group size ", group, " is not one of 32, 64 or 128"));
  }
  if (k % group != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "W4A8: the input width ", k, " is not a multiple of the group size ",
        group, " (", k, " = ", k / group, " x ", group, " + ", k % group, ")"));
  }
  return absl::OkStatus();
}

template <typename T>
T* Grow(std::vector<T>* v, size_t n) {
  if (v->size() < n) v->resize(n);
  return v->data();
}

}  // namespace

int W4A8Linear::GroupFor(int k) {
  for (int g : {128, 64, 32}) {
    if (k % g == 0) return g;
  }
  return 0;
}

std::string W4A8Linear::KernelDescription() {
  const std::optional<W4KernelIsa> isa = KernelIsa();
  if (!isa) return "none";
  if (UseAmx(*isa)) {
    return absl::StrCat(W4KernelIsaName(*isa), ", amx_int8 from ",
                        kW4AmxMinRows, " rows");
  }
  return W4KernelIsaName(*isa);
}

absl::StatusOr<std::unique_ptr<W4A8Linear>> W4A8Linear::FromPlain(
    const W4Plain& w, const Options& options) {
  if (absl::Status s = CheckShape(w.k, w.group); !s.ok()) return s;
  const std::optional<W4KernelIsa> isa = KernelIsa();
  if (!isa) {
    return absl::FailedPreconditionError(
        "W4A8 needs a CPU with AVX2, FMA and F16C");
  }
  if (options.mode == ActQuantMode::kPerTensorStatic &&
      !(options.static_absmax > 0 && std::isfinite(options.static_absmax))) {
    return absl::InvalidArgumentError(
        "W4A8: static mode needs a positive calibrated absmax");
  }
  // Minimums too: a Q4_K block's dmin x m past half's range, or a W4
  // weights file's, made every output of the module NaN.
  for (const std::vector<uint16_t>* halves : {&w.scale, &w.min}) {
    for (uint16_t h : *halves) {
      if ((h & 0x7C00) == 0x7C00) {
        return absl::InvalidArgumentError(absl::StrCat(
            "W4A8: a group ", halves == &w.scale ? "scale" : "minimum",
            " is infinite or NaN (weights beyond half's range, |w| > 8 x "
            "65504)"));
      }
    }
  }
  auto lin = std::unique_ptr<W4A8Linear>(new W4A8Linear());
  lin->options_ = options;
  lin->options_.importance = {};
  lin->options_.group = w.group;
  lin->packed_ = PackW4Weights(w, *isa);
  if (UseAmx(*isa)) lin->packed_.amx_min_rows = kW4AmxMinRows;
  return lin;
}

absl::StatusOr<std::unique_ptr<W4A8Linear>> W4A8Linear::Create(
    const WeightRows& w, const Options& options) {
  const int K = w.cols(), N = w.rows();
  if (absl::Status s = CheckShape(K, options.group); !s.ok()) return s;
  const absl::Span<const float> h = options.importance;
  if (!h.empty()) {
    if (h.size() != size_t(K)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "W4A8: ", h.size(), " importance values for ", K, " input channels"));
    }
    for (size_t j = 0; j < h.size(); ++j) {
      if (!(h[j] >= 0) || !std::isfinite(h[j])) {
        return absl::InvalidArgumentError(
            absl::StrCat("W4A8: importance[", j, "] is ", h[j],
                         "; a mean square is finite and >= 0"));
      }
    }
  }
  W4Plain plain;
  plain.n = N;
  plain.k = K;
  plain.group = options.group;
  plain.u.resize(size_t(N) * K);
  plain.scale.resize(size_t(N) * plain.groups());
  plain.has_min = options.with_min;
  if (plain.has_min) plain.min.resize(plain.scale.size());
#pragma omp parallel
  {
    std::vector<float> row(K);
#pragma omp for schedule(static)
    for (int r = 0; r < N; ++r) {
      w.Row(r, row.data());
      const size_t g0 = size_t(r) * plain.groups();
      if (!h.empty() && plain.has_min) {
        QuantizeW4RowMinWeighted(row.data(), h.data(), K, options.group,
                                 &plain.u[size_t(r) * K], &plain.scale[g0],
                                 &plain.min[g0]);
      } else if (!h.empty()) {
        QuantizeW4RowWeighted(row.data(), h.data(), K, options.group,
                              &plain.u[size_t(r) * K], &plain.scale[g0]);
      } else if (plain.has_min) {
        QuantizeW4RowMin(row.data(), K, options.group, &plain.u[size_t(r) * K],
                         &plain.scale[g0], &plain.min[g0]);
      } else {
        QuantizeW4Row(row.data(), K, options.group, &plain.u[size_t(r) * K],
                      &plain.scale[g0]);
      }
    }
  }
  w.Done(0, N);
  absl::StatusOr<std::unique_ptr<W4A8Linear>> lin = FromPlain(plain, options);
  if (lin.ok()) (*lin)->importance_weighted_ = !h.empty();
  return lin;
}

absl::StatusOr<std::unique_ptr<W4A8Linear>> W4A8Linear::FromStored(
    const WeightRows& w, const Options& options) {
  const std::optional<FourBitLayout> layout = w.four_bit();
  if (!layout) {
    return absl::InvalidArgumentError("W4A8: the weights are not stored 4-bit");
  }
  W4Plain plain;
  plain.n = w.rows();
  plain.k = w.cols();
  plain.group = layout->group;
  plain.has_min = layout->has_min;
  const int groups = plain.k / plain.group;
  plain.u.resize(size_t(plain.n) * plain.k);
  plain.scale.resize(size_t(plain.n) * groups);
  if (plain.has_min) plain.min.resize(plain.scale.size());
#pragma omp parallel for schedule(static)
  for (int r = 0; r < plain.n; ++r) {
    w.FourBitRow(r, &plain.u[size_t(r) * plain.k],
                 &plain.scale[size_t(r) * groups],
                 plain.has_min ? &plain.min[size_t(r) * groups] : nullptr);
  }
  w.Done(0, plain.n);
  return FromPlain(plain, options);
}

void W4A8Linear::Quantize(const LinearInput& in, Prepared* p) const {
  const int m = in.m, K = packed_.k;
  p->m = m;
  float* row_scale = Grow(&p->row_scale, size_t(m));
  int8_t* xq = Grow(&p->xq, size_t(m) * K);
  int32_t* sums = Grow(&p->sums, size_t(m) * (K / packed_.group));
  QuantizeActivations(in, K, options_.mode, options_.static_absmax, row_scale,
                      xq);
  W4GroupSums(xq, m, K, packed_.group, sums);
}

void W4A8Linear::Forward(const LinearInput& in, float* y) const {
  thread_local Prepared p;  // shared by every W4A8Linear on a thread
  Quantize(in, &p);
  W4Gemm(p.xq.data(), p.sums.data(), p.m, packed_, p.row_scale.data(), y);
}

int W4A8Linear::TeamUnits(int m) const { return W4Units(packed_, m); }

void W4A8Linear::TeamPrepare(const LinearInput& in) const {
  Quantize(in, &team_);
}

void W4A8Linear::TeamRun(int u0, int u1, float* y) const {
  W4GemmUnits(team_.xq.data(), team_.sums.data(), team_.m, packed_,
              team_.row_scale.data(), y, u0, u1);
}

absl::Span<const uint8_t> W4A8Linear::TeamUnitWeights(int m, int u0,
                                                      int u1) const {
  return W4UnitWeights(packed_, m, u0, u1);
}

}  // namespace spikeserve
