#include "runtime/int8_linear.h"

#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "dnnl.hpp"

namespace spikeserve {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;

struct Dnnl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

Dnnl& GetDnnl() {
  static Dnnl* d = new Dnnl();
  return *d;
}

struct Primitive {
  dnnl::matmul matmul;
  memory::desc weights_desc;
  std::string impl;
};

memory::desc SrcDesc(int m, int k) { return memory::desc({m, k}, Dt::s8, Tag::ab); }
memory::desc DstDesc(int m, int n) { return memory::desc({m, n}, Dt::s32, Tag::ab); }

absl::StatusOr<Primitive> CreatePrimitive(int m, int k, int n) {
  Dnnl& d = GetDnnl();
  try {
    memory::desc wei({k, n}, Dt::s8, Tag::any);
    dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(SrcDesc(m, k), wei, DstDesc(m, n)), d.engine);
    Primitive p{dnnl::matmul(pd), pd.weights_desc(), pd.impl_info_str()};
    if (absl::StartsWith(p.impl, "ref")) {
      return absl::FailedPreconditionError(absl::StrCat(
          "oneDNN chose the reference kernel '", p.impl, "' for an int8 ",
          m, "x", k, "x", n, " matmul; this CPU lacks the int8 "
          "instructions spikeserve needs (AVX-512 VNNI or AVX2)"));
    }
    return p;
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("oneDNN int8 matmul ", m, "x", k,
                                            "x", n, ": ", e.what()));
  }
}

// Process-wide cache: primitives depend only on (bucket, K, N), so all the
// layers of a model share them. Guarded for safety; hit on every call.
const Primitive* GetPrimitive(int mb, int k, int n) {
  static std::mutex mu;
  static auto* cache = new std::map<std::tuple<int, int, int>, Primitive>();
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_tuple(mb, k, n);
  auto it = cache->find(key);
  if (it == cache->end()) {
    absl::StatusOr<Primitive> p = CreatePrimitive(mb, k, n);
    if (!p.ok()) return nullptr;  // Create() checked this shape at load
    it = cache->emplace(key, *std::move(p)).first;
  }
  return &it->second;
}

// Scratch shared by every Int8Linear on a thread: one model's 4 x layers
// linears would otherwise each hold (and first-touch) their own buffers.
struct Scratch {
  std::vector<int8_t> xq;       // [m][K] quantized rows
  std::vector<int32_t> acc;     // [m][N] accumulators
  std::vector<float> row_scale; // [m]
  int m = 0, k = 0, n = 0;      // shape of the last call
};
Scratch& GetScratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

const std::vector<int32_t>& Int8Linear::last_accumulators() {
  return GetScratch().acc;
}
const std::vector<int8_t>& Int8Linear::last_quantized_input() {
  return GetScratch().xq;
}
const std::vector<float>& Int8Linear::last_row_scales() {
  return GetScratch().row_scale;
}

int RowBucket(int m) { return m <= 16 ? m : (m + 15) / 16 * 16; }

absl::StatusOr<std::string> Int8MatmulImpl(int m, int k, int n) {
  absl::StatusOr<Primitive> p = CreatePrimitive(m, k, n);
  if (!p.ok()) return p.status();
  return p->impl;
}

absl::StatusOr<std::string> WarmUpInt8Matmul(int k, int n, int max_rows) {
  const Primitive* first = GetPrimitive(1, k, n);
  if (first == nullptr) return Int8MatmulImpl(1, k, n).status();
  Dnnl& d = GetDnnl();
  std::vector<int8_t> src(size_t(RowBucket(max_rows)) * k, 1);
  std::vector<uint8_t> wei(first->weights_desc.get_size(), 0);
  std::vector<int32_t> dst(size_t(RowBucket(max_rows)) * n);
  for (int m = 1; m <= max_rows; m = RowBucket(m) + 1) {
    const int mb = RowBucket(m);
    const Primitive* p = GetPrimitive(mb, k, n);
    if (p == nullptr) return Int8MatmulImpl(mb, k, n).status();
    if (!(p->weights_desc == first->weights_desc)) {
      return absl::InternalError(absl::StrCat(
          "oneDNN int8 matmul ", mb, "x", k, "x", n,
          " wants another weight layout than M = 1"));
    }
    memory s(SrcDesc(mb, k), d.engine, src.data());
    memory w(p->weights_desc, d.engine, wei.data());
    memory o(DstDesc(mb, n), d.engine, dst.data());
    p->matmul.execute(d.stream,
                      {{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, o}});
  }
  d.stream.wait();
  return first->impl;
}

absl::StatusOr<std::unique_ptr<Int8Linear>> Int8Linear::Create(
    const Matrix& w, const Options& options) {
  auto lin = std::unique_ptr<Int8Linear>(new Int8Linear());
  lin->k_ = w.cols;
  lin->n_ = w.rows;
  lin->options_ = options;
  if (options.mode == ActQuantMode::kPerTensorStatic &&
      !(options.static_absmax > 0 && std::isfinite(options.static_absmax))) {
    return absl::InvalidArgumentError(
        "int8 linear: static mode needs a positive calibrated absmax");
  }
  const int K = w.cols, N = w.rows;
  // Per-output-channel symmetric quantization of W [N][K].
  std::vector<int8_t> plain(size_t(N) * K);
  lin->w_scale_.resize(N);
  for (int r = 0; r < N; ++r) {
    const float s = ScaleFor(AbsMax(w.row(r), K));
    lin->w_scale_[r] = s;
    QuantizeRow(w.row(r), K, 1.0f / s, &plain[size_t(r) * K]);
  }
  // Reorder once into the layout the kernel wants (same for every M bucket:
  // checked against the M = 1 primitive below and at first use of others).
  absl::StatusOr<Primitive> p = CreatePrimitive(1, K, N);
  if (!p.ok()) return p.status();
  Dnnl& d = GetDnnl();
  // Plain weights as oneDNN's {K, N} with W's [N][K] storage: tag "ba".
  memory src_mem(memory::desc({K, N}, Dt::s8, Tag::ba), d.engine, plain.data());
  lin->w_blocked_.resize(p->weights_desc.get_size());
  memory dst_mem(p->weights_desc, d.engine, lin->w_blocked_.data());
  dnnl::reorder(src_mem, dst_mem).execute(d.stream, src_mem, dst_mem);
  d.stream.wait();
  if (options.keep_plain_weights) lin->w_plain_ = std::move(plain);
  return lin;
}

void Int8Linear::Forward(const LinearInput& in, float* y) const {
  const int m = in.m, K = k_, N = n_;
  const int mb = RowBucket(m);
  Scratch& sc = GetScratch();
  std::vector<float>& row_scale_ = sc.row_scale;
  std::vector<int8_t>& xq_ = sc.xq;
  std::vector<int32_t>& acc_ = sc.acc;
  // 1. Row scales.
  row_scale_.resize(m);
  auto absmax = [&](int r) {
    return in.row_absmax ? in.row_absmax[r] : AbsMax(in.x + size_t(r) * K, K);
  };
  switch (options_.mode) {
    case ActQuantMode::kPerTokenDynamic:
      for (int r = 0; r < m; ++r) row_scale_[r] = ScaleFor(absmax(r));
      break;
    case ActQuantMode::kPerTensorDynamic:
      for (size_t g = 0; g + 1 < in.seq_bounds.size(); ++g) {
        float mx = 0;
        for (int r = in.seq_bounds[g]; r < in.seq_bounds[g + 1]; ++r) {
          mx = std::max(mx, absmax(r));
        }
        for (int r = in.seq_bounds[g]; r < in.seq_bounds[g + 1]; ++r) {
          row_scale_[r] = ScaleFor(mx);
        }
      }
      break;
    case ActQuantMode::kPerTensorStatic:
      for (int r = 0; r < m; ++r) row_scale_[r] = ScaleFor(options_.static_absmax);
      break;
  }
  // 2. Quantize into a bucket-sized buffer; padding rows are zero.
  xq_.resize(size_t(mb) * K);
  for (int r = 0; r < m; ++r) {
    QuantizeRow(in.x + size_t(r) * K, K, 1.0f / row_scale_[r],
                &xq_[size_t(r) * K]);
  }
  std::memset(xq_.data() + size_t(m) * K, 0, size_t(mb - m) * K);
  // 3. s8 x s8 -> s32 on the VNNI kernel.
  acc_.resize(size_t(mb) * N);
  const Primitive* p = GetPrimitive(mb, K, N);
  Dnnl& d = GetDnnl();
  memory src(SrcDesc(mb, K), d.engine, xq_.data());
  memory wei(p->weights_desc, d.engine,
             const_cast<uint8_t*>(w_blocked_.data()));
  memory dst(DstDesc(mb, N), d.engine, acc_.data());
  p->matmul.execute(d.stream, {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_WEIGHTS, wei},
                               {DNNL_ARG_DST, dst}});
  d.stream.wait();
  // 4. Epilogue: dequantize with the row and channel scales.
  for (int r = 0; r < m; ++r) {
    const float sx = row_scale_[r];
    const int32_t* a = &acc_[size_t(r) * N];
    float* yr = y + size_t(r) * N;
    for (int n = 0; n < N; ++n) yr[n] = float(a[n]) * (sx * w_scale_[n]);
  }
  xq_.resize(size_t(m) * K);  // expose only real rows to tests
  acc_.resize(size_t(m) * N);
}

}  // namespace spikeserve
