#include "runtime/linear/quantize.h"

#include <cmath>

#include "runtime/linear/cpu_dispatch.h"

namespace spikeserve {

const char* ActQuantModeName(ActQuantMode m) {
  switch (m) {
    case ActQuantMode::kPerTensorDynamic:
      return "per-tensor-dynamic";
    case ActQuantMode::kPerTokenDynamic:
      return "per-token-dynamic";
    case ActQuantMode::kPerTensorStatic:
      return "per-tensor-static";
  }
  return "?";
}

// 16 lanes: a single running max is a dependency chain the compiler keeps
// scalar (max is exact in any order, so the lanes change no result).
SPIKESERVE_CPU_CLONES float AbsMax(const float* x, int n) {
  constexpr int kLanes = 16;
  float lane[kLanes] = {};
  int j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float a = std::fabs(x[j + l]);
      lane[l] = a > lane[l] ? a : lane[l];
    }
  }
  float m = 0.0f;
  for (; j < n; ++j) {
    const float a = std::fabs(x[j]);
    m = a > m ? a : m;
  }
  for (float a : lane) m = a > m ? a : m;
  return m;
}

SPIKESERVE_CPU_CLONES void QuantizeRow(const float* x, int n, float inv_scale,
                                       int8_t* q) {
  for (int j = 0; j < n; ++j) {
    float v = std::nearbyint(x[j] * inv_scale);
    v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
    q[j] = static_cast<int8_t>(v);
  }
}

}  // namespace spikeserve
