// GGUF's 4-bit types read as the W4A8 kernels' plain form (w4_gemm.h): the
// nibbles and block scales as the file stores them, no detour through FP32.
//   Q4_0 (18 bytes per 32): w = d·(u - 8)        -> symmetric, group 32
//   Q4_1 (20 bytes per 32): w = d·u + m          -> with mins, group 32
//   Q4_K (144 bytes per 256): 8 sub-blocks of 32, w = (d·sc)·u - dmin·m,
//     6-bit sc and m          -> with mins, group 32; d·sc and -dmin·m are
//     rounded to half (relative error at most 2^-11 of the scale: far below
//     the 4-bit step, but not bit-exact as Q4_0 and Q4_1 are)
#ifndef SPIKESERVE_RUNTIME_GGUF_FOUR_BIT_H_
#define SPIKESERVE_RUNTIME_GGUF_FOUR_BIT_H_

#include <cstdint>
#include <optional>

#include "runtime/linear/weight_rows.h"

namespace spikeserve {

// The layout a ggml type becomes, or nullopt for other types.
std::optional<FourBitLayout> FourBitLayoutOf(uint32_t type_id);

// One row of `cols` elements (a whole number of blocks) of a type
// FourBitLayoutOf accepts: u[cols] nibbles, scale[cols / 32] and, with
// mins, min[cols / 32], as IEEE half.
void FourBitRowOf(uint32_t type_id, const uint8_t* src, int cols, uint8_t* u,
                  uint16_t* scale, uint16_t* min);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_GGUF_FOUR_BIT_H_
