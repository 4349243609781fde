#include "runtime/quantize.h"

#include <cmath>

#include "runtime/cpu_dispatch.h"

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

SPIKESERVE_CPU_CLONES float AbsMax(const float* x, int n) {
  float m = 0.0f;
  for (int j = 0; j < n; ++j) {
    const float a = std::fabs(x[j]);
    m = a > m ? a : m;
  }
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
