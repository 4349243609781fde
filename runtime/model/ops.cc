#include "runtime/model/ops.h"

#include <immintrin.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "runtime/linear/cpu_dispatch.h"
#include "runtime/linear/parallel_rows.h"

namespace spikeserve {
namespace {

// e^x in float, inline so loops vectorize (libm's expf is a call per
// element). x = n·ln2 + r with |r| <= ln2/2, e^r by its degree-6 Taylor
// polynomial (truncation < 2e-7 relative), 2^n built in the exponent bits.
// Inputs are clamped to [-87, 88] (results stay finite and normal).
inline float FastExp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // Round to nearest by the 1.5·2^23 trick rather than std::nearbyint,
  // which GCC keeps scalar (vroundss): this way, with -fno-trapping-math
  // for the clamp, every loop over FastExp vectorizes (SiluMul and Softmax
  // were 18% of a 512-token prefill).
  constexpr float kRound = 12582912.0f;
  const float t = x * 1.44269504f + kRound;
  const float n = t - kRound;
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n from t's bits: t = 1.5·2^23 + n holds n in its low mantissa bits,
  // so n needs no float-to-int conversion, and all of it is unsigned: a
  // NaN input passes the clamp, and converting it (INT_MIN) then shifting
  // that left was undefined behaviour (UBSan, on a model computing NaN).
  // A NaN stays NaN through p.
  uint32_t bits;
  std::memcpy(&bits, &t, sizeof(bits));
  const uint32_t exponent = (bits - 0x4B400000u + 127u) << 23;
  float two_n;
  std::memcpy(&two_n, &exponent, sizeof(two_n));
  return p * two_n;
}

}  // namespace

float Exp(float x) { return FastExp(x); }

SPIKESERVE_CPU_CLONES void RmsNorm(const float* x, const float* gain, int n,
                                   float eps, float* y) {
  // Sum of squares in 8 double lanes (vectorizable; double keeps it exact
  // enough that the order does not matter at float precision).
  double lane[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) lane[j] += double(x[i + j]) * x[i + j];
  }
  double sum = 0;
  for (; i < n; ++i) sum += double(x[i]) * x[i];
  for (double l : lane) sum += l;
  const float scale = 1.0f / std::sqrt(float(sum / n) + eps);
  for (int i = 0; i < n; ++i) y[i] = x[i] * scale * gain[i];
}

void RopeAngles(int pos, int rope_dims, float base, float* cos_sin) {
  RopeAngles(pos, rope_dims, base, 1.0f, nullptr, cos_sin);
}

void RopeAngles(int pos, int rope_dims, float base, float freq_scale,
                const float* factors, float* cos_sin) {
  // theta is advanced multiplicatively, as llama.cpp does, so angles agree
  // to the last bit of float rounding with the reference.
  const float theta_scale = std::pow(base, -2.0f / rope_dims);
  float theta_base = float(pos);
  for (int i = 0; i < rope_dims / 2; ++i, theta_base *= theta_scale) {
    const float extrap = factors ? theta_base / factors[i] : theta_base;
    const float theta = freq_scale * extrap;
    cos_sin[2 * i] = std::cos(theta);
    cos_sin[2 * i + 1] = std::sin(theta);
  }
}

void ApplyRope(float* x, int n_heads, int head_dim, int rope_dims,
               const float* cos_sin, bool neox) {
  if (neox) {
    const int half = rope_dims / 2;
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + h * head_dim;
      for (int i = 0; i < half; ++i) {
        const float c = cos_sin[2 * i], s = cos_sin[2 * i + 1];
        const float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * c - x1 * s;
        v[i + half] = x0 * s + x1 * c;
      }
    }
    return;
  }
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int i = 0; i < rope_dims / 2; ++i) {
      const float c = cos_sin[2 * i], s = cos_sin[2 * i + 1];
      const float x0 = v[2 * i], x1 = v[2 * i + 1];
      v[2 * i] = x0 * c - x1 * s;
      v[2 * i + 1] = x0 * s + x1 * c;
    }
  }
}

void Rope(float* x, int n_heads, int head_dim, int rope_dims, int pos,
          float base) {
  std::vector<float> cs(rope_dims);
  RopeAngles(pos, rope_dims, base, cs.data());
  ApplyRope(x, n_heads, head_dim, rope_dims, cs.data());
}

SPIKESERVE_CPU_CLONES double SumExpShifted(const float* x, int n, float shift) {
  // 16 independent float lanes (vectorizable without reassociation flags),
  // flushed to double every 1024 elements to bound float rounding.
  double total = 0;
  for (int start = 0; start < n; start += 1024) {
    const int end = n - start < 1024 ? n : start + 1024;
    float lanes[16] = {};
    int i = start;
    for (; i + 16 <= end; i += 16) {
      for (int j = 0; j < 16; ++j) lanes[j] += FastExp(x[i + j] - shift);
    }
    for (; i < end; ++i) lanes[0] += FastExp(x[i] - shift);
    for (float l : lanes) total += l;
  }
  return total;
}

SPIKESERVE_CPU_CLONES void SiluMulPortable(const float* gate, const float* up,
                                           int n, float* h) {
  for (int i = 0; i < n; ++i) {
    const float g = gate[i];
    h[i] = g / (1.0f + FastExp(-g)) * up[i];
  }
}

// FastExp on 8 lanes with FMA: the same steps (clamp, 2^n split, degree-6
// polynomial), each multiply-add fused.
__attribute__((target("avx2,fma"))) inline __m256 FastExp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)),
                    _mm256_set1_ps(88.0f));
  const __m256 round = _mm256_set1_ps(12582912.0f);
  const __m256 n = _mm256_sub_ps(
      _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504f), round), round);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i two_n = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(two_n));
}

// SiluMul 8 at a time: GCC's clones of the loop above computed the
// clamped cases' quotients beside the main one and blended (two divisions
// per vector), 4.9 us for 1536 values on Zen 3, where a decode step runs
// it serially once per layer; this takes ~0.5 us.
__attribute__((target("avx2,fma"))) void SiluMulAvx2(const float* gate,
                                                     const float* up, int n,
                                                     float* h) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = FastExp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
    _mm256_storeu_ps(h + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
  }
  SiluMulPortable(gate + i, up + i, n - i, h + i);
}

void SiluMul(const float* gate, const float* up, int n, float* h) {
  if (CpuHasAvx2Fma()) {
    SiluMulAvx2(gate, up, n, h);
  } else {
    SiluMulPortable(gate, up, n, h);
  }
}

// A float's bits as an int32 that orders as the float does (negative
// floats' magnitude bits flipped); its own inverse.
inline int32_t FloatOrderKey(int32_t bits) {
  return bits ^ ((bits >> 31) & 0x7fffffff);
}

// The max as an integer reduction over order keys (GCC 12 keeps a float
// max, x > m ? x : m, scalar even in lanes), then exp and sum in 16
// independent lanes: a single running sum is a loop-carried dependency the
// compiler may not vectorize without reassociation flags.
SPIKESERVE_CPU_CLONES void Softmax(float* x, int n) {
  constexpr int kLanes = 16;
  int32_t key = INT32_MIN;
  for (int i = 0; i < n; ++i) {
    int32_t bits;
    std::memcpy(&bits, x + i, sizeof(bits));
    key = std::max(key, FloatOrderKey(bits));
  }
  const int32_t mx_bits = FloatOrderKey(key);
  float mx;
  std::memcpy(&mx, &mx_bits, sizeof(mx));
  // exp and its sum in one pass, 16 lanes at a time (the same sums, in
  // the same order, as a separate pass).
  float lane[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float e = FastExp(x[i + j] - mx);
      x[i + j] = e;
      lane[j] += e;
    }
  }
  float sum = 0;
  for (; i < n; ++i) sum += (x[i] = FastExp(x[i] - mx));
  for (float l : lane) sum += l;
  const float inv = 1.0f / sum;
  for (i = 0; i < n; ++i) x[i] *= inv;
}

void AddResidual(const float* delta, int m, int h, float* x) {
  // Forks from 32 rows: below, the fork costs more than it saves.
  ParallelRows(m, m >= 32, [&](int r) {
    float* xr = x + size_t(r) * h;
    const float* dr = delta + size_t(r) * h;
    for (int i = 0; i < h; ++i) xr[i] += dr[i];
  });
}

}  // namespace spikeserve
