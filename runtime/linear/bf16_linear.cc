#include "runtime/linear/bf16_linear.h"

#include <cstring>
#include <vector>

#include "runtime/linear/cpu_dispatch.h"
#include "runtime/linear/fixed_order_gemm.h"

namespace spikeserve {
namespace {

SPIKESERVE_CPU_CLONES void ToBf16(const float* x, size_t n, uint16_t* out) {
  for (size_t i = 0; i < n; ++i) out[i] = FloatToBf16(x[i]);
}

}  // namespace

uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x7FFFFFu)) {
    return uint16_t((u >> 16) | 0x40);  // quiet NaN
  }
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

absl::StatusOr<std::unique_ptr<Bf16Linear>> Bf16Linear::Create(
    const WeightRows& w) {
  auto lin = std::unique_ptr<Bf16Linear>(new Bf16Linear());
  const int K = w.cols(), N = w.rows();
  lin->k_ = K;
  lin->n_ = N;
  lin->w_.resize(size_t(N) * K);
  uint16_t* out = lin->w_.data();
#pragma omp parallel
  {
    std::vector<float> row(K);
#pragma omp for schedule(static)
    for (int r = 0; r < N; ++r) {
      w.Row(r, row.data());
      ToBf16(row.data(), K, out + size_t(r) * K);
    }
  }
  w.Done(0, N);
  return lin;
}

void Bf16Linear::Forward(const LinearInput& in, float* y) const {
  FixedOrderGemm(in.x, in.m, w_.data(), n_, k_, y);
}

}  // namespace spikeserve
