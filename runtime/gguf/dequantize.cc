#include "runtime/gguf/dequantize.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/gguf/dequantize_k.h"
#include "runtime/gguf/ggml_type.h"

namespace spikeserve {
namespace {

uint16_t LoadU16(const uint8_t* p) {
  uint16_t x;
  std::memcpy(&x, p, 2);
  return x;
}

uint32_t LoadU32(const uint8_t* p) {
  uint32_t x;
  std::memcpy(&x, p, 4);
  return x;
}

// Block layouts (ggml-common.h): all little-endian, f16 scales first.
//   Q4_0: {f16 d; u8 qs[16]}         x = (nibble - 8) * d
//   Q4_1: {f16 d; f16 m; u8 qs[16]}  x = nibble * d + m
//   Q8_0: {f16 d; i8 qs[32]}         x = q * d
// Nibbles: element j < 16 is the low nibble of qs[j], element j + 16 the
// high nibble.
void DequantQ4_0(const uint8_t* b, float* y, uint64_t blocks) {
  for (uint64_t i = 0; i < blocks; ++i, b += 18, y += 32) {
    const float d = HalfToFloat(LoadU16(b));
    const uint8_t* qs = b + 2;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
      y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
}

void DequantQ4_1(const uint8_t* b, float* y, uint64_t blocks) {
  for (uint64_t i = 0; i < blocks; ++i, b += 20, y += 32) {
    const float d = HalfToFloat(LoadU16(b));
    const float m = HalfToFloat(LoadU16(b + 2));
    const uint8_t* qs = b + 4;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
      y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
    }
  }
}

void DequantQ8_0(const uint8_t* b, float* y, uint64_t blocks) {
  for (uint64_t i = 0; i < blocks; ++i, b += 34, y += 32) {
    const float d = HalfToFloat(LoadU16(b));
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(qs[j]) * d;
  }
}

// Q5_0: 22 bytes per 32 elements, {f16 d; u32 qh; u8 qs[16]}.
//   5-bit code q_j = nibble_j | (bit j of qh) << 4, nibbles as in Q4_0
//   (element j < 16 low nibble of qs[j], j + 16 its high nibble);
//   x = (q - 16) * d.
void DequantQ5_0(const uint8_t* b, float* y, uint64_t blocks) {
  for (uint64_t i = 0; i < blocks; ++i, b += 22, y += 32) {
    const float d = HalfToFloat(LoadU16(b));
    const uint32_t qh = LoadU32(b + 2);
    const uint8_t* qs = b + 6;
    for (int j = 0; j < 16; ++j) {
      const int lo = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
      const int hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = static_cast<float>(lo - 16) * d;
      y[j + 16] = static_cast<float>(hi - 16) * d;
    }
  }
}

// Q5_1: 24 bytes per 32 elements, {f16 d; f16 m; u32 qh; u8 qs[16]}.
//   Codes as in Q5_0, unsigned; x = q * d + m (product rounded first).
void DequantQ5_1(const uint8_t* b, float* y, uint64_t blocks) {
  for (uint64_t i = 0; i < blocks; ++i, b += 24, y += 32) {
    const float d = HalfToFloat(LoadU16(b));
    const float m = HalfToFloat(LoadU16(b + 2));
    const uint32_t qh = LoadU32(b + 4);
    const uint8_t* qs = b + 8;
    for (int j = 0; j < 16; ++j) {
      const int lo = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
      const int hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = static_cast<float>(lo) * d + m;
      y[j + 16] = static_cast<float>(hi) * d + m;
    }
  }
}

// IQ4_NL: 18 bytes per 32 elements, {f16 d; u8 qs[16]}, nibbles as in Q4_0;
//   each nibble indexes the non-linear table kIq4NlValues; x = value * d.
void DequantIQ4_NL(const uint8_t* b, float* y, uint64_t blocks) {
  for (uint64_t i = 0; i < blocks; ++i, b += 18, y += 32) {
    const float d = HalfToFloat(LoadU16(b));
    const uint8_t* qs = b + 2;
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(kIq4NlValues[qs[j] & 0x0F]) * d;
      y[j + 16] = static_cast<float>(kIq4NlValues[qs[j] >> 4]) * d;
    }
  }
}

}  // namespace

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {  // inf / nan
    bits = sign | 0x7F800000 | (mant << 13);
  } else if (exp != 0) {  // normal
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {  // zero
    bits = sign;
  } else {  // subnormal: renormalize
    exp = 113;
    while ((mant & 0x400) == 0) {
      mant <<= 1;
      --exp;
    }
    bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {  // inf or NaN (a quiet NaN stays a NaN)
    return uint16_t(sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u : 0));
  }
  const int exp = int(abs >> 23) - 127;  // unbiased
  if (exp > 15) return uint16_t(sign | 0x7C00u);
  // The significand with its implicit bit, and how far right it moves:
  // 13 bits for a normal half, more below 2^-14 (subnormal halves).
  const uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;
  const int shift = exp >= -14 ? 13 : 13 + (-14 - exp);
  if (shift > 24) return sign;  // below half the smallest subnormal
  uint32_t h = mant >> shift;
  const uint32_t rest = mant & ((1u << shift) - 1);
  const uint32_t half_way = 1u << (shift - 1);
  if (rest > half_way || (rest == half_way && (h & 1u))) ++h;
  // A normal half: the biased exponent above the 10 significand bits (the
  // implicit bit adds 1 to it, as does a rounding carry, which is right).
  if (exp >= -14) return uint16_t(sign | ((uint32_t(exp + 14) << 10) + h));
  return uint16_t(sign | h);
}

float Bf16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

bool IsDequantizable(uint32_t type_id) {
  switch (static_cast<GgmlType>(type_id)) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_0:
    case GgmlType::kQ5_1:
    case GgmlType::kQ8_0:
    case GgmlType::kIQ4_NL:
    case GgmlType::kQ2_K:
    case GgmlType::kQ3_K:
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K:
    case GgmlType::kQ6_K:
    case GgmlType::kIQ4_XS:
      return true;
    default:
      return false;
  }
}

void DequantizeRow(uint32_t type_id, const uint8_t* src, float* dst,
                   uint64_t n) {
  switch (static_cast<GgmlType>(type_id)) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      break;
    case GgmlType::kF16:
      for (uint64_t i = 0; i < n; ++i)
        dst[i] = HalfToFloat(LoadU16(src + 2 * i));
      break;
    case GgmlType::kBF16:
      for (uint64_t i = 0; i < n; ++i)
        dst[i] = Bf16ToFloat(LoadU16(src + 2 * i));
      break;
    case GgmlType::kQ4_0:
      DequantQ4_0(src, dst, n / 32);
      break;
    case GgmlType::kQ4_1:
      DequantQ4_1(src, dst, n / 32);
      break;
    case GgmlType::kQ5_0:
      DequantQ5_0(src, dst, n / 32);
      break;
    case GgmlType::kQ5_1:
      DequantQ5_1(src, dst, n / 32);
      break;
    case GgmlType::kQ8_0:
      DequantQ8_0(src, dst, n / 32);
      break;
    case GgmlType::kIQ4_NL:
      DequantIQ4_NL(src, dst, n / 32);
      break;
    case GgmlType::kQ2_K:
      DequantQ2_K(src, dst, n / 256);
      break;
    case GgmlType::kQ3_K:
      DequantQ3_K(src, dst, n / 256);
      break;
    case GgmlType::kQ4_K:
      DequantQ4_K(src, dst, n / 256);
      break;
    case GgmlType::kQ5_K:
      DequantQ5_K(src, dst, n / 256);
      break;
    case GgmlType::kQ6_K:
      DequantQ6_K(src, dst, n / 256);
      break;
    case GgmlType::kIQ4_XS:
      DequantIQ4_XS(src, dst, n / 256);
      break;
    default:
      break;  // callers check IsDequantizable first
  }
}

absl::StatusOr<std::vector<float>> DequantizeTensor(const GgufTensor& t) {
  if (!IsDequantizable(t.type)) {
    return absl::UnimplementedError(absl::StrCat(
        "tensor '", t.name, "' has unsupported type ", GgmlTypeName(t.type),
        " (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, "
        "Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)"));
  }
  std::vector<float> out(t.num_elements);
  DequantizeRow(t.type, t.data, out.data(), t.num_elements);
  return out;
}

}  // namespace spikeserve
