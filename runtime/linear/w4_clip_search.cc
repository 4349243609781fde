#include "runtime/linear/w4_clip_search.h"

#include <algorithm>
#include <cmath>

#include "runtime/gguf/dequantize.h"

namespace spikeserve {
namespace {

constexpr int kMaxGroup = 128;

// Clipping grid: each group's scale from its extremes times r (r < 1 clips
// the extremes, up to half of them; r > 1 widens the step). The best point
// is then refined by weighted least squares for the codes it gives.
constexpr float kRatios[] = {1.1f, 0.95f, 0.9f, 0.85f, 0.8f, 0.75f,
                             0.7f, 0.65f, 0.6f, 0.55f, 0.5f};
constexpr int kRefinements = 2;

bool UsableHalf(uint16_t h) { return (h & 0x7C00) != 0x7C00; }

// Round to nearest, ties to even, as std::nearbyint in the default mode
// for |x| < 2^22 (larger values only need to stay beyond the codes' range,
// which they do): inline and vectorizable, where nearbyint is a libm call
// per weight and the search rounds each weight about 30 times.
inline float RoundNearest(float x) {
  constexpr float kMagic = 12582912.0f;  // 1.5 · 2^23
  return (x + kMagic) - kMagic;
}

// One group of n weights (a multiple of 8) with their importance (uniform
// when it sums to 0).
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

// A candidate: half scale, half minimum (0 when symmetric).
struct Candidate {
  uint16_t dh = 0, mh = 0;
};

// The code of w[i] under candidate (d, mn, inv): symmetric in [-8, 7], or
// with a minimum in [0, 15].
template <bool kWithMin>
inline float Code(float w, float mn, float inv) {
  if (kWithMin) return std::clamp(RoundNearest((w - mn) * inv), 0.0f, 15.0f);
  return std::clamp(RoundNearest(w * inv), -8.0f, 7.0f);
}

// Weighted error of a candidate; with kSums also Σhq², Σhq, Σh, Σhqw, Σhw
// of its codes (the least-squares normal equations).
template <bool kWithMin, bool kSums = false>
double Error(const Group& g, Candidate c, double* sums = nullptr) {
  const float d = HalfToFloat(c.dh);
  const float mn = kWithMin ? HalfToFloat(c.mh) : 0.0f;
  const float inv = d != 0 ? 1.0f / d : 0.0f;
  // Eight partial sums, so that the loop vectorizes without reassociation.
  float err[8] = {}, a[8] = {}, b[8] = {}, hw[8] = {}, p[8] = {}, r[8] = {};
  for (int i0 = 0; i0 < g.n; i0 += 8) {
    for (int t = 0; t < 8; ++t) {
      const float w = g.w[i0 + t], h = g.h[i0 + t];
      const float q = Code<kWithMin>(w, mn, inv);
      const float e = w - (d * q + mn);
      err[t] += h * e * e;
      if (kSums) {
        a[t] += h * q * q;
        b[t] += h * q;
        hw[t] += h;
        p[t] += h * q * w;
        r[t] += h * w;
      }
    }
  }
  double total = 0;
  for (int t = 0; t < 8; ++t) total += err[t];
  if (kSums) {
    for (int k = 0; k < 5; ++k) sums[k] = 0;
    for (int t = 0; t < 8; ++t) {
      sums[0] += a[t];
      sums[1] += b[t];
      sums[2] += hw[t];
      sums[3] += p[t];
      sums[4] += r[t];
    }
  }
  return total;
}

// The candidate weighted least squares gives for the codes of `c`:
// symmetric d = Σhqw / Σhq² (q = u - 8); with a minimum, the 2x2 normal
// equations of w ≈ d·q + mn. False when degenerate or not representable.
template <bool kWithMin>
bool LeastSquares(const Group& g, Candidate c, Candidate* out) {
  double s[5];  // Σhq², Σhq, Σh, Σhqw, Σhw
  Error<kWithMin, true>(g, c, s);
  float d, mn = 0;
  if (kWithMin) {
    const double det = s[0] * s[2] - s[1] * s[1];
    if (!(det > 1e-12 * s[0] * s[2])) return false;
    d = float((s[2] * s[3] - s[1] * s[4]) / det);
    mn = float((s[0] * s[4] - s[1] * s[3]) / det);
    if (!(d > 0)) return false;
  } else {
    if (!(s[0] > 0)) return false;
    d = float(s[3] / s[0]);
  }
  if (!std::isfinite(d) || !std::isfinite(mn) || d == 0) return false;
  out->dh = FloatToHalf(d);
  out->mh = kWithMin ? FloatToHalf(mn) : 0;
  return UsableHalf(out->dh) && UsableHalf(out->mh);
}

// Searches from `base` (round-to-nearest from the extremes, kept on ties)
// over the candidates `propose(r, &c)` makes for each ratio, then refines
// the best by least squares; writes the codes of the winner.
template <bool kWithMin, typename Propose>
Candidate Search(const Group& g, Candidate base, Propose propose, uint8_t* u) {
  Candidate best = base;
  double best_err = Error<kWithMin>(g, base);
  auto consider = [&](Candidate c) {
    if (c.dh == best.dh && c.mh == best.mh) return;
    const double e = Error<kWithMin>(g, c);
    if (e < best_err) {
      best_err = e;
      best = c;
    }
  };
  for (float r : kRatios) propose(r, consider);
  for (int i = 0; i < kRefinements; ++i) {
    Candidate ls;
    if (!LeastSquares<kWithMin>(g, best, &ls)) break;
    consider(ls);
  }
  const float d = HalfToFloat(best.dh);
  const float mn = kWithMin ? HalfToFloat(best.mh) : 0.0f;
  const float inv = d != 0 ? 1.0f / d : 0.0f;
  for (int i = 0; i < g.n; ++i) {
    const float q = Code<kWithMin>(g.w[i], mn, inv);
    u[i] = uint8_t(kWithMin ? q : q + 8.0f);
  }
  return best;
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
    // Round-to-nearest from the extreme (QuantizeW4Row) first.
    Candidate base;
    base.dh = FloatToHalf(peak / -8.0f);
    auto propose = [&](float r, auto& consider) {
      if (peak == 0) return;
      // The extreme at code -8, or at +7 (one step shorter).
      for (float d : {r * peak / -8.0f, r * peak / 7.0f}) {
        Candidate c;
        c.dh = FloatToHalf(d);
        if (d != 0 && UsableHalf(c.dh)) consider(c);
      }
    };
    scale[gi] = Search<false>(g, base, propose, u + g0).dh;
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
    Candidate base;
    base.mh = FloatToHalf(lo);
    base.dh = FloatToHalf((hi - HalfToFloat(base.mh)) / 15.0f);
    const float range = hi - lo;
    auto propose = [&](float r, auto& consider) {
      if (!(range > 0)) return;
      // The 15 steps centred on the range.
      const float d = r * range / 15.0f;
      Candidate c;
      c.dh = FloatToHalf(d);
      c.mh = FloatToHalf(lo + 0.5f * (range - 15.0f * d));
      if (UsableHalf(c.dh) && UsableHalf(c.mh)) consider(c);
    };
    const Candidate best = Search<true>(g, base, propose, u + g0);
    scale[gi] = best.dh;
    min[gi] = best.mh;
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
