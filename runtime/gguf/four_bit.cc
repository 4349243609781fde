#include "runtime/gguf/four_bit.h"

#include <cstring>

#include "runtime/gguf/dequantize.h"
#include "runtime/gguf/dequantize_k.h"
#include "runtime/gguf/ggml_type.h"

namespace spikeserve {
namespace {

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The 16 bytes of a Q4_0/Q4_1 block: element j < 16 is qs[j]'s low
// nibble, element j + 16 its high nibble.
void Nibbles32(const uint8_t* qs, uint8_t* u) {
  for (int j = 0; j < 16; ++j) {
    u[j] = qs[j] & 0x0F;
    u[j + 16] = qs[j] >> 4;
  }
}

}  // namespace

std::optional<FourBitLayout> FourBitLayoutOf(uint32_t type_id) {
  switch (GgmlType(type_id)) {
    case GgmlType::kQ4_0:
      return FourBitLayout{32, false};
    case GgmlType::kQ4_1:
    case GgmlType::kQ4_K:
      return FourBitLayout{32, true};
    default:
      return std::nullopt;
  }
}

void FourBitRowOf(uint32_t type_id, const uint8_t* src, int cols, uint8_t* u,
                  uint16_t* scale, uint16_t* min) {
  switch (GgmlType(type_id)) {
    case GgmlType::kQ4_0:
      for (int b = 0; b < cols / 32; ++b, src += 18) {
        scale[b] = LoadU16(src);
        Nibbles32(src + 2, u + 32 * b);
      }
      return;
    case GgmlType::kQ4_1:
      for (int b = 0; b < cols / 32; ++b, src += 20) {
        scale[b] = LoadU16(src);
        min[b] = LoadU16(src + 2);
        Nibbles32(src + 4, u + 32 * b);
      }
      return;
    case GgmlType::kQ4_K:
      for (int b = 0; b < cols / 256; ++b, src += 144) {
        const float d = HalfToFloat(LoadU16(src));
        const float dmin = HalfToFloat(LoadU16(src + 2));
        const uint8_t* scales = src + 4;
        const uint8_t* qs = src + 16;
        for (int j = 0; j < 8; ++j) {
          int sc = 0, m = 0;
          ScaleMinK4(j, scales, &sc, &m);
          scale[8 * b + j] = FloatToHalf(d * float(sc));
          min[8 * b + j] = FloatToHalf(-(dmin * float(m)));
          const int c = j / 2, shift = 4 * (j % 2);
          for (int l = 0; l < 32; ++l) {
            u[256 * b + 32 * j + l] = (qs[32 * c + l] >> shift) & 0x0F;
          }
        }
      }
      return;
    default:
      return;
  }
}

}  // namespace spikeserve
