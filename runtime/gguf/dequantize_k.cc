#include "runtime/gguf/dequantize_k.h"

#include <cstring>

#include "runtime/gguf/dequantize.h"

namespace spikeserve {
namespace {

constexpr int kQK = 256;  // elements per super-block (ggml's QK_K)

float LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return HalfToFloat(h);
}

}  // namespace

// The 12 scale bytes shared by Q4_K and Q5_K: eight 6-bit scales and eight
// 6-bit mins, one pair per 32-element sub-block j:
//   j < 4:  scale = s[j] & 63,              min = s[j + 4] & 63
//   j >= 4: scale = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4,
//           min   = (s[j + 4] >> 4) | (s[j] >> 6) << 4
void ScaleMinK4(int j, const uint8_t* s, int* scale, int* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q2_K: 84 bytes, {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}.
//   16 sub-blocks of 16 elements; scales[g] holds the 4-bit scale (low) and
//   4-bit min (high) of sub-block g. 2-bit codes: element e = 128 h + 32 s
//   + l (h < 2, s < 4, l < 32) is bits 2s..2s+1 of qs[32 h + l]; its
//   sub-block is g = e / 16. x = (d * scale) * q - (dmin * min).
void DequantQ2_K(const uint8_t* b, float* y, uint64_t blocks) {
  for (uint64_t i = 0; i < blocks; ++i, b += 84, y += kQK) {
    const uint8_t* scales = b;
    const uint8_t* qs = b + 16;
    const float d = LoadHalf(b + 80);
    const float dmin = LoadHalf(b + 82);
    for (int e = 0; e < kQK; ++e) {
      const int h = e / 128, s = (e / 32) % 4, l = e % 32;
      const int q = (qs[32 * h + l] >> (2 * s)) & 3;
      const uint8_t sc = scales[e / 16];
      const float dl = d * static_cast<float>(sc & 0x0F);
      const float ml = dmin * static_cast<float>(sc >> 4);
      y[e] = dl * static_cast<float>(q) - ml;
    }
  }
}

// Q3_K: 110 bytes, {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}.
//   16 sub-blocks of 16 elements with signed 6-bit scales (stored + 32):
//   scale g has low 4 bits from scales[g % 8] (low nibble for g < 8, high
//   nibble for g >= 8) and high 2 bits from scales[8 + g % 4] at bit
//   2 (g / 4). Element e = 128 h + 32 s + l: low 2 bits are bits 2s..2s+1
//   of qs[32 h + l]; bit (e / 32) of hmask[l] set means no offset, clear
//   means subtract 4. x = (d * (scale - 32)) * q, q in [-4, 3].
void DequantQ3_K(const uint8_t* b, float* y, uint64_t blocks) {
  for (uint64_t i = 0; i < blocks; ++i, b += 110, y += kQK) {
    const uint8_t* hmask = b;
    const uint8_t* qs = b + 32;
    const uint8_t* sc = b + 96;
    const float d = LoadHalf(b + 108);
    for (int e = 0; e < kQK; ++e) {
      const int g = e / 16;
      const int lo = (sc[g % 8] >> (4 * (g / 8))) & 0x0F;
      const int hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
      const float dl = d * static_cast<float>((lo | (hi << 4)) - 32);
      const int h = e / 128, s = (e / 32) % 4, l = e % 32;
      const int low = (qs[32 * h + l] >> (2 * s)) & 3;
      const int high = (hmask[l] >> (e / 32)) & 1;
      y[e] = dl * static_cast<float>(low - (high ? 0 : 4));
    }
  }
}

// Q4_K: 144 bytes, {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}.
//   8 sub-blocks of 32 with 6-bit scale and min (ScaleMinK4). Sub-block
//   j = 2c + k (c < 4, k < 2), element l < 32: nibble k (low, then high) of
//   qs[32 c + l]. x = (d * scale) * q - (dmin * min).
// Q5_K: 176 bytes, {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}.
//   As Q4_K, plus a fifth bit: bit j of qh[l] is bit 4 of element l of
//   sub-block j, q in [0, 31].
template <bool kFifthBit>
void DequantQ45_K(const uint8_t* b, float* y, uint64_t blocks) {
  constexpr int kBytes = kFifthBit ? 176 : 144;
  for (uint64_t i = 0; i < blocks; ++i, b += kBytes, y += kQK) {
    const float d = LoadHalf(b);
    const float dmin = LoadHalf(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;  // Q5_K only
    const uint8_t* qs = b + (kFifthBit ? 48 : 16);
    for (int j = 0; j < 8; ++j) {
      int scale, min;
      ScaleMinK4(j, scales, &scale, &min);
      const float dl = d * static_cast<float>(scale);
      const float ml = dmin * static_cast<float>(min);
      const int c = j / 2, shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        int q = (qs[32 * c + l] >> shift) & 0x0F;
        if (kFifthBit) q |= ((qh[l] >> j) & 1) << 4;
        y[32 * j + l] = dl * static_cast<float>(q) - ml;
      }
    }
  }
}
void DequantQ4_K(const uint8_t* b, float* y, uint64_t blocks) {
  DequantQ45_K<false>(b, y, blocks);
}
void DequantQ5_K(const uint8_t* b, float* y, uint64_t blocks) {
  DequantQ45_K<true>(b, y, blocks);
}

// Q6_K: 210 bytes, {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}.
//   16 sub-blocks of 16 with signed 8-bit scales. Element e = 128 h + 32 s
//   + l (h < 2, s < 4, l < 32): low 4 bits are nibble (s / 2) of
//   ql[64 h + 32 (s % 2) + l], high 2 bits are bits 2s..2s+1 of
//   qh[32 h + l]. x = (d * scales[e / 16]) * (q - 32).
void DequantQ6_K(const uint8_t* b, float* y, uint64_t blocks) {
  for (uint64_t i = 0; i < blocks; ++i, b += 210, y += kQK) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
    const float d = LoadHalf(b + 208);
    for (int e = 0; e < kQK; ++e) {
      const int h = e / 128, s = (e / 32) % 4, l = e % 32;
      const int low = (ql[64 * h + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0F;
      const int high = (qh[32 * h + l] >> (2 * s)) & 3;
      const float dl = d * static_cast<float>(scales[e / 16]);
      y[e] = dl * static_cast<float>((low | (high << 4)) - 32);
    }
  }
}

// IQ4_XS: 136 bytes, {f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}.
//   8 sub-blocks of 32 with signed 6-bit scales (stored + 32): low 4 bits
//   are nibble (j % 2) of scales_l[j / 2], high 2 bits are bits 2j..2j+1
//   of scales_h. Sub-block j's codes are qs[16 j .. 16 j + 15], element
//   l < 16 the low nibble, l + 16 the high nibble, each an index into
//   kIq4NlValues. x = (d * (scale - 32)) * value.
void DequantIQ4_XS(const uint8_t* b, float* y, uint64_t blocks) {
  for (uint64_t i = 0; i < blocks; ++i, b += 136, y += kQK) {
    const float d = LoadHalf(b);
    const unsigned scales_h = b[2] | (b[3] << 8);
    const uint8_t* scales_l = b + 4;
    const uint8_t* qs = b + 8;
    for (int j = 0; j < 8; ++j) {
      const int lo = (scales_l[j / 2] >> (4 * (j % 2))) & 0x0F;
      const int hi = (scales_h >> (2 * j)) & 3;
      const float dl = d * static_cast<float>((lo | (hi << 4)) - 32);
      for (int l = 0; l < 16; ++l) {
        const uint8_t q = qs[16 * j + l];
        y[32 * j + l] = dl * static_cast<float>(kIq4NlValues[q & 0x0F]);
        y[32 * j + l + 16] = dl * static_cast<float>(kIq4NlValues[q >> 4]);
      }
    }
  }
}

}  // namespace spikeserve
