#include "runtime/linear/w4_clip_search.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/gguf/dequantize.h"

namespace spikeserve {
namespace {

constexpr int kMaxGroup = 128;

// Clipping grid: each group's scale from its extremes times r (r < 1 clips
// the extremes, up to half of them; r > 1 widens the step). Each point is
// also refined by weighted least squares for the codes it gives.
constexpr float kRatios[] = {1.1f, 0.95f, 0.9f, 0.85f, 0.8f, 0.75f,
                             0.7f, 0.65f, 0.6f, 0.55f, 0.5f};

bool UsableHalf(uint16_t h) { return (h & 0x7C00) != 0x7C00; }

// One group of n weights with their importance (uniform when it sums to 0).
struct Group {
  const float* w;
  const float* h;
  int n;
  float uniform[kMaxGroup];

  Group(const float* w_in, const float* h_in, int n_in)
      : w(w_in), h(h_in), n(n_in) {
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += h[i];
    if (!(sum > 0)) {
      std::fill(uniform, uniform + n, 1.0f);
      h = uniform;
    }
  }
};

// Round-to-nearest codes for half scale dh (and half minimum mh when
// `with_min`), and their weighted error.
double Codes(const Group& g, uint16_t dh, bool with_min, uint16_t mh,
             uint8_t* u) {
  const float d = HalfToFloat(dh);
  const float mn = with_min ? HalfToFloat(mh) : 0.0f;
  const float inv = d != 0 ? 1.0f / d : 0.0f;
  double err = 0;
  for (int i = 0; i < g.n; ++i) {
    float q;
    double rec;
    if (with_min) {
      q = std::clamp(std::nearbyint((g.w[i] - mn) * inv), 0.0f, 15.0f);
      rec = double(d) * q + mn;
      u[i] = uint8_t(q);
    } else {
      q = std::clamp(std::nearbyint(g.w[i] * inv), -8.0f, 7.0f);
      rec = double(d) * q;
      u[i] = uint8_t(q + 8.0f);
    }
    const double e = double(g.w[i]) - rec;
    err += double(g.h[i]) * e * e;
  }
  return err;
}

// The best candidate so far: its error, half scale, half minimum, codes.
struct Best {
  double err;
  uint16_t dh, mh;
  uint8_t u[kMaxGroup];
};

// Symmetric: tries half(d), then d refined by weighted least squares for
// the codes half(d) gave: d* = Σ h·w·q / Σ h·q².
void TrySymmetric(const Group& g, float d, Best* best) {
  if (!std::isfinite(d) || d == 0) return;
  const uint16_t dh = FloatToHalf(d);
  if (!UsableHalf(dh)) return;
  uint8_t u[kMaxGroup];
  const double err = Codes(g, dh, false, 0, u);
  if (err < best->err) {
    *best = {err, dh, 0, {}};
    std::memcpy(best->u, u, g.n);
  }
  double num = 0, den = 0;
  for (int i = 0; i < g.n; ++i) {
    const double q = int(u[i]) - 8;
    num += double(g.h[i]) * g.w[i] * q;
    den += double(g.h[i]) * q * q;
  }
  if (den <= 0) return;
  const float ls = float(num / den);
  if (!std::isfinite(ls) || ls == 0) return;
  const uint16_t lh = FloatToHalf(ls);
  if (!UsableHalf(lh) || lh == dh) return;
  const double lerr = Codes(g, lh, false, 0, u);
  if (lerr < best->err) {
    *best = {lerr, lh, 0, {}};
    std::memcpy(best->u, u, g.n);
  }
}

// With a minimum: tries (half(d), half(mn)), then both refined by weighted
// least squares for the codes they gave (the 2x2 normal equations of
// w ≈ d·q + mn).
void TryWithMin(const Group& g, float d, float mn, Best* best) {
  if (!std::isfinite(d) || !std::isfinite(mn) || d <= 0) return;
  const uint16_t dh = FloatToHalf(d), mh = FloatToHalf(mn);
  if (!UsableHalf(dh) || !UsableHalf(mh)) return;
  uint8_t u[kMaxGroup];
  const double err = Codes(g, dh, true, mh, u);
  if (err < best->err) {
    *best = {err, dh, mh, {}};
    std::memcpy(best->u, u, g.n);
  }
  double a = 0, b = 0, c = 0, p = 0, r = 0;  // Σhq², Σhq, Σh, Σhqw, Σhw
  for (int i = 0; i < g.n; ++i) {
    const double h = g.h[i], q = u[i];
    a += h * q * q;
    b += h * q;
    c += h;
    p += h * q * g.w[i];
    r += h * g.w[i];
  }
  const double det = a * c - b * b;
  if (!(det > 1e-12 * a * c)) return;
  const float ld = float((c * p - b * r) / det);
  const float lm = float((a * r - b * p) / det);
  if (!std::isfinite(ld) || !std::isfinite(lm) || ld <= 0) return;
  const uint16_t ldh = FloatToHalf(ld), lmh = FloatToHalf(lm);
  if (!UsableHalf(ldh) || !UsableHalf(lmh) || (ldh == dh && lmh == mh)) {
    return;
  }
  const double lerr = Codes(g, ldh, true, lmh, u);
  if (lerr < best->err) {
    *best = {lerr, ldh, lmh, {}};
    std::memcpy(best->u, u, g.n);
  }
}

}  // namespace

void QuantizeW4RowWeighted(const float* w, const float* importance, int k,
                           int group, uint8_t* u, uint16_t* scale) {
  for (int g0 = 0, gi = 0; g0 < k; g0 += group, ++gi) {
    const Group g(w + g0, importance + g0, std::min(group, kMaxGroup));
    float peak = 0;  // the value of largest magnitude, with its sign
    for (int i = 0; i < g.n; ++i) {
      if (std::fabs(g.w[i]) > std::fabs(peak)) peak = g.w[i];
    }
    // Round-to-nearest from the extreme (QuantizeW4Row) first: ties keep it.
    Best best;
    best.dh = FloatToHalf(peak / -8.0f);
    best.mh = 0;
    best.err = Codes(g, best.dh, false, 0, best.u);
    if (peak != 0) {
      for (float r : kRatios) {
        TrySymmetric(g, r * peak / -8.0f, &best);
        // The extreme on the positive side of the codes (one step shorter).
        TrySymmetric(g, r * peak / 7.0f, &best);
      }
    }
    scale[gi] = best.dh;
    std::memcpy(u + g0, best.u, g.n);
  }
}

void QuantizeW4RowMinWeighted(const float* w, const float* importance, int k,
                              int group, uint8_t* u, uint16_t* scale,
                              uint16_t* min) {
  for (int g0 = 0, gi = 0; g0 < k; g0 += group, ++gi) {
    const Group g(w + g0, importance + g0, std::min(group, kMaxGroup));
    float lo = g.w[0], hi = g.w[0];
    for (int i = 1; i < g.n; ++i) {
      lo = std::min(lo, g.w[i]);
      hi = std::max(hi, g.w[i]);
    }
    // Round-to-nearest from the extremes (QuantizeW4RowMin) first.
    Best best;
    best.mh = FloatToHalf(lo);
    best.dh = FloatToHalf((hi - HalfToFloat(best.mh)) / 15.0f);
    best.err = Codes(g, best.dh, true, best.mh, best.u);
    const float range = hi - lo;
    if (range > 0) {
      for (float r : kRatios) {
        // The 15 steps centred on the range.
        const float d = r * range / 15.0f;
        TryWithMin(g, d, lo + 0.5f * (range - 15.0f * d), &best);
      }
    }
    scale[gi] = best.dh;
    min[gi] = best.mh;
    std::memcpy(u + g0, best.u, g.n);
  }
}

double W4GroupWeightedError(const float* w, const float* importance, int n,
                            const uint8_t* u, uint16_t scale,
                            const uint16_t* min) {
  const double d = HalfToFloat(scale);
  const double mn = min != nullptr ? HalfToFloat(*min) : 0.0;
  double err = 0;
  for (int i = 0; i < n; ++i) {
    const double rec = min != nullptr ? d * u[i] + mn : d * (int(u[i]) - 8);
    const double e = double(w[i]) - rec;
    err += double(importance[i]) * e * e;
  }
  return err;
}

}  // namespace spikeserve
