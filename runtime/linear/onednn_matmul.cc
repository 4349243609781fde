#include "runtime/linear/onednn_matmul.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
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

Dt SrcType(MatmulKind k) { return k == MatmulKind::kS8S8S32 ? Dt::s8 : Dt::u8; }
memory::desc SrcDesc(MatmulKind kind, int m, int k) {
  return memory::desc({m, k}, SrcType(kind), Tag::ab);
}
memory::desc DstDesc(int m, int n) {
  return memory::desc({m, n}, Dt::s32, Tag::ab);
}

// With `weights` null oneDNN chooses the weight layout (format "any"),
// else it must take the given one.
absl::StatusOr<Primitive> CreatePrimitive(
    MatmulKind kind, int m, int k, int n,
    const memory::desc* weights = nullptr) {
  Dnnl& d = GetDnnl();
  try {
    const memory::desc wei =
        weights ? *weights : memory::desc({k, n}, Dt::s8, Tag::any);
    dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(SrcDesc(kind, m, k), wei, DstDesc(m, n)), d.engine);
    Primitive p{dnnl::matmul(pd), pd.weights_desc(), pd.impl_info_str()};
    if (absl::StartsWith(p.impl, "ref")) {
      return absl::FailedPreconditionError(absl::StrCat(
          "oneDNN chose the reference kernel '", p.impl, "' for an int8 ", m,
          "x", k, "x", n,
          " matmul: this CPU lacks the instructions for it (int8 needs "
          "AVX-512 VNNI or AVX2)"));
    }
    return p;
  } catch (const dnnl::error& e) {
    return absl::InternalError(
        absl::StrCat("oneDNN int8 matmul ", m, "x", k, "x", n, ": ", e.what()));
  }
}

// Process-wide cache; guarded for safety, hit on every call. Every bucket
// reads the weights in M = 1's layout (the one they are reordered to
// once), so buckets of M > 1 are created with that layout given (left to
// itself, AMX's brgemm picks another blocking for M > 1 at small shapes);
// an error, naming the shape and the ISA, only if oneDNN has no kernel
// that reads it. Checked when a bucket is created (nothing failed is
// cached).
absl::StatusOr<const Primitive*> GetPrimitive(MatmulKind kind, int mb, int k,
                                              int n) {
  static std::mutex mu;
  static auto* cache =
      new std::map<std::tuple<int, int, int, int>, Primitive>();
  std::lock_guard<std::mutex> lock(mu);
  auto cached = [&](int m) -> const Primitive* {
    auto it = cache->find(std::make_tuple(int(kind), m, k, n));
    return it == cache->end() ? nullptr : &it->second;
  };
  auto keep = [&](int m, Primitive p) {
    return &cache->emplace(std::make_tuple(int(kind), m, k, n), std::move(p))
                .first->second;
  };
  const Primitive* first = cached(1);
  if (first == nullptr) {
    absl::StatusOr<Primitive> p = CreatePrimitive(kind, 1, k, n);
    if (!p.ok()) return p.status();
    first = keep(1, *std::move(p));
  }
  if (mb == 1) return first;
  if (const Primitive* p = cached(mb)) return p;
  absl::StatusOr<Primitive> p =
      CreatePrimitive(kind, mb, k, n, &first->weights_desc);
  if (!p.ok()) {
    return absl::InternalError(absl::StrCat(
        "oneDNN int8 matmul ", mb, "x", k, "x", n, " on ", OneDnnCpuIsa(),
        " has no kernel for M = 1's weight layout: ", p.status().message()));
  }
  if (p->weights_desc != first->weights_desc) {
    return absl::InternalError(absl::StrCat(
        "oneDNN int8 matmul ", mb, "x", k, "x", n, " on ", OneDnnCpuIsa(),
        " wants another weight layout than M = 1"));
  }
  return keep(mb, *std::move(p));
}

}  // namespace

std::string OneDnnCpuIsa() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "other";
  }
}

bool Int8MatmulHasVnni() {
  // avx2_vnni is left out: oneDNN 2.6 has no brgemm int8 matmul for it and
  // its gemm kernels are not known to use vpdpbusd there. Read once: every
  // INT8 forward asks (Int8Kind), and oneDNN's ISA is fixed at first use.
  static const bool vnni = [] {
    switch (dnnl::get_effective_cpu_isa()) {
      case dnnl::cpu_isa::avx512_core_vnni:
      case dnnl::cpu_isa::avx512_core_bf16:
      case dnnl::cpu_isa::avx512_core_amx:
        return true;
      default:
        return false;
    }
  }();
  return vnni;
}

bool Int8MatmulHasAmx() {
  static const bool amx =
      dnnl::get_effective_cpu_isa() == dnnl::cpu_isa::avx512_core_amx;
  return amx;
}

MatmulKind Int8Kind() {
  return Int8MatmulHasVnni() ? MatmulKind::kS8S8S32 : MatmulKind::kU8S8S32;
}

int Int8WeightQmax() {
  static const int qmax = Int8MatmulHasVnni() ? 127 : 63;
  return qmax;
}

int RowBucket(int m) { return m <= 16 ? m : (m + 15) / 16 * 16; }

absl::StatusOr<std::string> MatmulImpl(MatmulKind kind, int m, int k, int n) {
  absl::StatusOr<Primitive> p = CreatePrimitive(kind, m, k, n);
  if (!p.ok()) return p.status();
  return p->impl;
}

absl::StatusOr<std::string> WarmUpMatmul(MatmulKind kind, int k, int n,
                                         int max_rows) {
  absl::StatusOr<const Primitive*> first = GetPrimitive(kind, 1, k, n);
  if (!first.ok()) return first.status();
  max_rows = std::min(max_rows, kMaxMatmulRows);
  std::vector<uint8_t> src(size_t(RowBucket(max_rows)) * k, 0);
  HugePageVector<uint8_t> wei((*first)->weights_desc.get_size(), 0);
  std::vector<uint8_t> dst(size_t(RowBucket(max_rows)) * n * 4);
  for (int m = 1; m <= max_rows; m = RowBucket(m) + 1) {
    const int mb = RowBucket(m);
    absl::StatusOr<const Primitive*> p = GetPrimitive(kind, mb, k, n);
    if (!p.ok()) return p.status();
    RunMatmul(kind, mb, k, n, src.data(), wei, dst.data());
  }
  return (*first)->impl;
}

absl::StatusOr<HugePageVector<uint8_t>> ReorderWeights(MatmulKind kind,
                                                       const void* w_nk, int k,
                                                       int n) {
  absl::StatusOr<const Primitive*> p = GetPrimitive(kind, 1, k, n);
  if (!p.ok()) return p.status();
  Dnnl& d = GetDnnl();
  HugePageVector<uint8_t> out((*p)->weights_desc.get_size());
  // Plain W [N][K] seen as oneDNN's {K, N}: tag "ba".
  memory src(memory::desc({k, n}, Dt::s8, Tag::ba), d.engine,
             const_cast<void*>(w_nk));
  memory dst((*p)->weights_desc, d.engine, out.data());
  dnnl::reorder(src, dst).execute(d.stream, src, dst);
  d.stream.wait();
  return out;
}

void RunMatmul(MatmulKind kind, int mb, int k, int n, const void* src,
               const HugePageVector<uint8_t>& blocked_weights, void* dst) {
  Dnnl& d = GetDnnl();
  for (int r0 = 0; r0 < mb; r0 += kMaxMatmulRows) {
    const int rows = std::min(kMaxMatmulRows, mb - r0);
    absl::StatusOr<const Primitive*> p = GetPrimitive(kind, rows, k, n);
    if (!p.ok()) {
      // Only a bucket no warm-up created gets here (see the header).
      std::fprintf(stderr, "%s\n", std::string(p.status().message()).c_str());
      std::abort();
    }
    memory s(SrcDesc(kind, rows, k), d.engine,
             const_cast<uint8_t*>(static_cast<const uint8_t*>(src) +
                                  size_t(r0) * k));
    memory w((*p)->weights_desc, d.engine,
             const_cast<uint8_t*>(blocked_weights.data()));
    memory o(DstDesc(rows, n), d.engine,
             static_cast<int32_t*>(dst) + size_t(r0) * n);
    (*p)->matmul.execute(
        d.stream,
        {{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, o}});
  }
  d.stream.wait();
}

}  // namespace spikeserve
