// Dequantization of GGUF tensor data to FP32, done once at load. The runtime
// computes in FP32 (or re-quantizes to its own INT8 layout), so GGUF's
// storage types only matter here.
#ifndef SPIKESERVE_RUNTIME_GGUF_DEQUANTIZE_H_
#define SPIKESERVE_RUNTIME_GGUF_DEQUANTIZE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_reader.h"

namespace spikeserve {

// True when DequantizeTensor handles ggml type `type_id`.
bool IsDequantizable(uint32_t type_id);

// IEEE half and bfloat16 to float.
float HalfToFloat(uint16_t h);
float Bf16ToFloat(uint16_t h);
// Float to IEEE half, rounding to nearest even, subnormals included; past
// the largest half (65504) to ±inf; NaN stays NaN.
uint16_t FloatToHalf(float f);

// `n` elements (a multiple of the type's block size) of type `type_id` at
// `src` to FP32 in `dst`. The caller has checked IsDequantizable and sizes.
void DequantizeRow(uint32_t type_id, const uint8_t* src, float* dst,
                   uint64_t n);

// The whole tensor as FP32, row-major in ggml order (dims[0] innermost).
// Unimplemented, naming the tensor and type, for types we cannot decode.
absl::StatusOr<std::vector<float>> DequantizeTensor(const GgufTensor& t);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_GGUF_DEQUANTIZE_H_
