// What the AMX kernels (int8_gemm_amx.h, w4_gemm_amx.h) share: whether the
// CPU and the OS let this process use the tiles, and their configuration.
//
// Both kernels use one tile assignment, for 32 rows x 32 columns per pass:
// tiles 0-3 the int32 sums C[row tile][column block] (16 x 16 each), 4-5
// two tiles of 16 activation rows (s8, `ks` bytes each), 6-7 the weights
// of two blocks of 16 columns ((ks/4) rows of [16 columns][4 k] bytes, the
// layout of the VNNI kernels' chunks).
#ifndef SPIKESERVE_RUNTIME_LINEAR_AMX_TILES_H_
#define SPIKESERVE_RUNTIME_LINEAR_AMX_TILES_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace spikeserve {

// Rows of one activation tile; a pass takes two.
inline constexpr int kAmxTileRows = 16;
// Columns of one weight block (one C tile); a pass takes two.
inline constexpr int kAmxBlockCols = 16;

// True when the CPU has AMX-TILE and AMX-INT8 and Linux granted this
// process the tile state (arch_prctl(ARCH_REQ_XCOMP_PERM), asked once for
// every thread). The kernels also need their epilogues' ISA, which they
// check themselves (Int8AmxSupported, W4AmxSupported).
bool AmxSupported();

// The 64-byte operand of ldtilecfg (palette 1) for the assignment above,
// with `ks` (64, or 32) bytes of k per tdpb* step.
struct alignas(64) AmxTileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
AmxTileConfig AmxConfigFor(int ks);

// A tile always loads 16 rows: the rows of x ([m][k] s8) past its last
// whole pair of tiles (m % 32 of them) are copied, zero-padded to 32, into
// `pad`; the whole pairs load from x itself. Returns the rows in whole
// pairs.
int AmxPadTail(const int8_t* x, int m, int k, std::vector<int8_t>* pad);

// A compiler barrier for memory. GCC 12's tile intrinsics are asm
// statements that do not tell the compiler what they read: ldtilecfg names
// 8 bytes of its 64, tileloadd none. Writes that a tile instruction reads
// (the configuration, an unpacked or padded buffer) are made visible before
// it by this.
inline void AmxMemoryBarrier() { asm volatile("" ::: "memory"); }

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_AMX_TILES_H_
