// Dequantizers for ggml's 256-element super-block types (K-quants and
// IQ4_XS), split from dequantize.cc to keep files small. Internal to
// runtime/gguf: callers use DequantizeRow in dequantize.h.
//
// All scalar and written for clarity: they run once per weight at load.
// Each computes in float32 in the same order as ggml's reference
// dequantize_row_* (sub-block scale = d * code, then scale * q - min), so
// results are bit-identical to it and to the `gguf` Python package; the
// files are built with -ffp-contract=off so no FMA changes a rounding.
#ifndef SPIKESERVE_RUNTIME_GGUF_DEQUANTIZE_K_H_
#define SPIKESERVE_RUNTIME_GGUF_DEQUANTIZE_K_H_

#include <cstdint>

namespace spikeserve {

// The 16 values of IQ4_NL/IQ4_XS codes (ggml's kvalues_iq4nl).
inline constexpr int8_t kIq4NlValues[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Sub-block j's 6-bit scale and min from the 12 scale bytes `s` shared by
// Q4_K and Q5_K.
void ScaleMinK4(int j, const uint8_t* s, int* scale, int* min);

// Each: `blocks` super-blocks of 256 elements at `b` to FP32 in `y`.
void DequantQ2_K(const uint8_t* b, float* y, uint64_t blocks);
void DequantQ3_K(const uint8_t* b, float* y, uint64_t blocks);
void DequantQ4_K(const uint8_t* b, float* y, uint64_t blocks);
void DequantQ5_K(const uint8_t* b, float* y, uint64_t blocks);
void DequantQ6_K(const uint8_t* b, float* y, uint64_t blocks);
void DequantIQ4_XS(const uint8_t* b, float* y, uint64_t blocks);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_GGUF_DEQUANTIZE_K_H_
