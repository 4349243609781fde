#include "runtime/linear/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

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

// |x| as bits: for non-negative floats the integers' order is the floats',
// and an integer max reduction vectorizes (GCC 12 kept the float form,
// a > m ? a : m, scalar: 5.6% of a 512-token SmolLM2-135M prefill on an
// Ice Lake Xeon). NaNs (bits above infinity's) count as 0: the float
// compare ignored them too.
SPIKESERVE_CPU_CLONES float AbsMax(const float* x, int n) {
  constexpr uint32_t kInf = 0x7f800000u;
  uint32_t m = 0;
  for (int j = 0; j < n; ++j) {
    uint32_t b;
    std::memcpy(&b, x + j, sizeof(b));
    b &= 0x7fffffffu;
    b &= 0u - uint32_t(b <= kInf);  // a NaN's bits to 0
    m = std::max(m, b);
  }
  float r;
  std::memcpy(&r, &m, sizeof(r));
  return r;
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
