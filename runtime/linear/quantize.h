// Symmetric INT8 quantization primitives (method.md §3):
//   scale = absmax / 127,  q = clamp(round_half_even(x / scale), -127, 127).
// The hot loops use function multiversioning (AVX-512 / AVX2 / baseline
// clones chosen at run time), never -march=native.
#ifndef SPIKESERVE_RUNTIME_LINEAR_QUANTIZE_H_
#define SPIKESERVE_RUNTIME_LINEAR_QUANTIZE_H_

#include <cmath>
#include <cstdint>

namespace spikeserve {

// How activation scales are chosen (method.md §3). "Per tensor" means per
// sequence per call: rows of different requests never share a scale.
enum class ActQuantMode {
  kPerTensorDynamic,  // one scale per sequence per call: for evaluation
                      // only (depends on how rows are batched)
  kPerTokenDynamic,   // one scale per row
  kPerTensorStatic,   // one calibrated scale for every row
};

const char* ActQuantModeName(ActQuantMode m);

// max_j |x[j]| over n entries (0 for none); NaN when an entry is NaN.
float AbsMax(const float* x, int n);

// Scale for an absmax: absmax / 127, or 1 when absmax is 0 (then every q is
// 0 and the scale is irrelevant); NaN for a NaN absmax (the row's outputs
// are NaN, as in FP32).
inline float ScaleFor(float absmax) {
  return absmax > 0 || std::isnan(absmax) ? absmax / 127.0f : 1.0f;
}

// q[j] = clamp(nearbyint(x[j] * inv_scale), -127, 127) for n entries (a
// NaN product gives some code in that range).
void QuantizeRow(const float* x, int n, float inv_scale, int8_t* q);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_QUANTIZE_H_
