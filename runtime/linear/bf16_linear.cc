#include "runtime/linear/bf16_linear.h"

#include <cstring>

#include "runtime/linear/cpu_dispatch.h"
#include "runtime/linear/onednn_matmul.h"

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
  std::vector<uint16_t> plain(size_t(N) * K);
#pragma omp parallel
  {
    std::vector<float> row(K);
#pragma omp for schedule(static)
    for (int r = 0; r < N; ++r) {
      w.Row(r, row.data());
      ToBf16(row.data(), K, plain.data() + size_t(r) * K);
    }
  }
  w.Done(0, N);
  absl::StatusOr<HugePageVector<uint8_t>> blocked =
      ReorderWeights(MatmulKind::kBf16Bf16F32, plain.data(), K, N);
  if (!blocked.ok()) return blocked.status();
  lin->w_blocked_ = *std::move(blocked);
  return lin;
}

void Bf16Linear::Forward(const LinearInput& in, float* y) const {
  thread_local std::vector<uint16_t> xb;
  thread_local std::vector<float> out;
  const int mb = RowBucket(in.m);
  if (xb.size() < size_t(mb) * k_) xb.resize(size_t(mb) * k_);
  ToBf16(in.x, size_t(in.m) * k_, xb.data());
  std::fill(xb.begin() + size_t(in.m) * k_, xb.begin() + size_t(mb) * k_, 0);
  if (mb == in.m) {
    RunMatmul(MatmulKind::kBf16Bf16F32, mb, k_, n_, xb.data(), w_blocked_, y);
    return;
  }
  if (out.size() < size_t(mb) * n_) out.resize(size_t(mb) * n_);
  RunMatmul(MatmulKind::kBf16Bf16F32, mb, k_, n_, xb.data(), w_blocked_,
            out.data());
  std::memcpy(y, out.data(), size_t(in.m) * n_ * sizeof(float));
}

}  // namespace spikeserve
