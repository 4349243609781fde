#include "runtime/linear/amx_tiles.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace spikeserve {
namespace {

// Linux's arch_prctl request for a state component (asm/prctl.h) and the
// component of the tile data (XTILEDATA, the 8 KiB of tmm0-7).
constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtiledata = 18;

bool CpuHasAmxInt8() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool tile = edx & (1u << 24), int8 = edx & (1u << 25);
  return tile && int8;
}

}  // namespace

bool AmxSupported() {
  static const bool ok =
      CpuHasAmxInt8() &&
      syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  return ok;
}

AmxTileConfig AmxConfigFor(int ks) {
  AmxTileConfig c;
  for (int t = 0; t < 4; ++t) {  // C: 16 rows of 16 int32
    c.rows[t] = kAmxTileRows;
    c.colsb[t] = 4 * kAmxBlockCols;
  }
  for (int t = 4; t < 6; ++t) {  // A: 16 rows of ks bytes
    c.rows[t] = kAmxTileRows;
    c.colsb[t] = uint16_t(ks);
  }
  for (int t = 6; t < 8; ++t) {  // B: ks/4 rows of 16 columns x 4 bytes
    c.rows[t] = uint8_t(ks / 4);
    c.colsb[t] = 4 * kAmxBlockCols;
  }
  return c;
}

int AmxPadTail(const int8_t* x, int m, int k, std::vector<int8_t>* pad) {
  const int full = m / (2 * kAmxTileRows) * (2 * kAmxTileRows);
  if (full < m) {
    pad->assign(size_t(2 * kAmxTileRows) * k, 0);
    std::memcpy(pad->data(), x + size_t(full) * k, size_t(m - full) * k);
  }
  return full;
}

}  // namespace spikeserve
