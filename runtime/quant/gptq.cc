#include "runtime/quant/gptq.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/gguf/dequantize.h"
#include "runtime/linear/w4_clip_search.h"

namespace spikeserve {
namespace {

// Rows quantized together: each row of U is read once per block.
constexpr int kRowBlock = 8;

// In-place lower Cholesky factor of the symmetric a [k][k] (row-major; the
// upper triangle is left as it was). False when a is not positive definite.
bool CholeskyLower(std::vector<double>& a, int k) {
  for (int j = 0; j < k; ++j) {
    double* rj = &a[size_t(j) * k];
    double s = rj[j];
    for (int p = 0; p < j; ++p) s -= rj[p] * rj[p];
    if (!(s > 0)) return false;
    rj[j] = std::sqrt(s);
    const double inv = 1.0 / rj[j];
#pragma omp parallel for schedule(static) if (k - j > 256)
    for (int i = j + 1; i < k; ++i) {
      double* ri = &a[size_t(i) * k];
      double t = ri[j];
      for (int p = 0; p < j; ++p) t -= ri[p] * rj[p];
      ri[j] = t * inv;
    }
  }
  return true;
}

// X = L⁻¹ for the lower triangle L of l [k][k]: row i of L·X = e_i gives
// X_i = (e_i - Σ_{p<i} L_ip·X_p) / L_ii, where X_p is zero beyond p.
std::vector<double> LowerInverse(const std::vector<double>& l, int k) {
  std::vector<double> x(size_t(k) * k, 0.0);
  for (int i = 0; i < k; ++i) {
    double* xi = &x[size_t(i) * k];
    const double* li = &l[size_t(i) * k];
    for (int p = 0; p < i; ++p) {
      const double c = li[p];
      const double* xp = &x[size_t(p) * k];
      for (int j = 0; j <= p; ++j) xi[j] -= c * xp[j];
    }
    xi[i] += 1.0;
    const double inv = 1.0 / li[i];
    for (int j = 0; j <= i; ++j) xi[j] *= inv;
  }
  return x;
}

absl::Status CheckGram(absl::Span<const float> gram, int k) {
  if (gram.size() != size_t(k) * k) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPTQ: the Gram matrix has ", gram.size(),
                     " values, K·K = ", size_t(k) * k, " expected"));
  }
  for (float v : gram) {
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(
          "GPTQ: the Gram matrix has a non-finite value");
    }
  }
  return absl::OkStatus();
}

// The code of w under the group's (d, mn), and its dequantized value.
struct Code {
  uint8_t u;
  float value;
};
inline Code QuantizeOne(float w, float d, float mn, bool with_min) {
  const float inv = d != 0 ? 1.0f / d : 0.0f;
  if (with_min) {
    const float q = std::clamp(std::nearbyint((w - mn) * inv), 0.0f, 15.0f);
    return {uint8_t(q), d * q + mn};
  }
  const float q = std::clamp(std::nearbyint(w * inv), -8.0f, 7.0f);
  return {uint8_t(q + 8.0f), d * q};
}

}  // namespace

absl::StatusOr<std::vector<double>> GptqInverseFactor(
    absl::Span<const float> gram, int k, double damp) {
  if (absl::Status s = CheckGram(gram, k); !s.ok()) return s;
  if (!(damp > 0 && std::isfinite(damp))) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPTQ damping is ", damp, "; it must be > 0"));
  }
  double mean_diag = 0;
  for (int i = 0; i < k; ++i) mean_diag += gram[size_t(i) * k + i];
  mean_diag = k > 0 ? mean_diag / k : 0;
  if (!(mean_diag > 0)) mean_diag = 1;
  // M = P·H·P with P the reversal: M = L·Lᵀ gives H⁻¹ = Uᵀ·U with the
  // upper U = P·L⁻¹·P, so one factorisation and one triangular inverse.
  for (int attempt = 0; attempt < 5; ++attempt, damp *= 10) {
    std::vector<double> m(size_t(k) * k);
    for (int i = 0; i < k; ++i) {
      for (int j = 0; j < k; ++j) {
        m[size_t(k - 1 - i) * k + (k - 1 - j)] = gram[size_t(i) * k + j];
      }
    }
    for (int i = 0; i < k; ++i) {
      double& d = m[size_t(i) * k + i];
      if (d == 0) d = 1;  // a dead channel: any weight does
      d += damp * mean_diag;
    }
    if (!CholeskyLower(m, k)) continue;
    const std::vector<double> x = LowerInverse(m, k);
    std::vector<double> u(size_t(k) * k, 0.0);
    for (int i = 0; i < k; ++i) {
      for (int j = i; j < k; ++j) {
        u[size_t(i) * k + j] = x[size_t(k - 1 - i) * k + (k - 1 - j)];
      }
    }
    return u;
  }
  return absl::InvalidArgumentError(
      "GPTQ: the Gram matrix is not positive semi-definite (the Cholesky "
      "factorisation failed even with 10^4 times the damping)");
}

absl::StatusOr<W4Plain> GptqQuantize(const WeightRows& w,
                                     absl::Span<const float> gram,
                                     const GptqOptions& options) {
  const int n = w.rows(), k = w.cols(), g = options.group;
  if ((g != 32 && g != 64 && g != 128) || k % g != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GPTQ: group ", g, " (32, 64 or 128 dividing K = ", k, ")"));
  }
  if (absl::Status s = CheckGram(gram, k); !s.ok()) return s;
  // perm[t] = the column quantized t-th; H (and so U) in that order.
  std::vector<int> perm(k);
  for (int i = 0; i < k; ++i) perm[i] = i;
  std::vector<float> diag(k);
  for (int i = 0; i < k; ++i) {
    diag[i] = std::max(0.0f, gram[size_t(i) * k + i]);
  }
  std::vector<float> permuted;
  absl::Span<const float> h = gram;
  if (options.act_order) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int a, int b) { return diag[a] > diag[b]; });
    permuted.resize(size_t(k) * k);
    for (int a = 0; a < k; ++a) {
      for (int b = 0; b < k; ++b) {
        permuted[size_t(a) * k + b] = gram[size_t(perm[a]) * k + perm[b]];
      }
    }
    h = permuted;
  }
  absl::StatusOr<std::vector<double>> ud =
      GptqInverseFactor(h, k, options.damp);
  if (!ud.ok()) return ud.status();
  const std::vector<float> u(ud->begin(), ud->end());
  const int groups = k / g;
  W4Plain out;
  out.n = n;
  out.k = k;
  out.group = g;
  out.has_min = options.with_min;
  out.u.resize(size_t(n) * k);
  out.scale.resize(size_t(n) * groups);
  if (options.with_min) out.min.resize(out.scale.size());
  const int blocks = (n + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(dynamic, 1)
  for (int b = 0; b < blocks; ++b) {
    const int r0 = b * kRowBlock, rows = std::min(kRowBlock, n - r0);
    std::vector<float> wb(size_t(rows) * k), orig(k);
    std::vector<uint8_t> codes(k);
    // Per row and group: d, mn.
    std::vector<float> d(size_t(rows) * groups), mn(size_t(rows) * groups);
    // The group's scale (and minimum) for row r from v = its weights now.
    auto choose = [&](int r, int gi, const float* v) {
      const size_t at = size_t(r0 + r) * groups + gi;
      if (options.with_min) {
        QuantizeW4RowMinWeighted(v, &diag[size_t(gi) * g], g, g, codes.data(),
                                 &out.scale[at], &out.min[at]);
        mn[size_t(r) * groups + gi] = HalfToFloat(out.min[at]);
      } else {
        QuantizeW4RowWeighted(v, &diag[size_t(gi) * g], g, g, codes.data(),
                              &out.scale[at]);
      }
      d[size_t(r) * groups + gi] = HalfToFloat(out.scale[at]);
    };
    for (int r = 0; r < rows; ++r) {
      w.Row(r0 + r, orig.data());
      if (options.act_order) {
        for (int gi = 0; gi < groups; ++gi) choose(r, gi, &orig[gi * g]);
      }
      for (int t = 0; t < k; ++t) wb[size_t(r) * k + t] = orig[perm[t]];
    }
    float err[kRowBlock];
    for (int t = 0; t < k; ++t) {
      const int i = perm[t], gi = i / g;
      if (!options.act_order && i % g == 0) {
        // In natural order: the group's scale for the row updated so far.
        for (int r = 0; r < rows; ++r) choose(r, gi, &wb[size_t(r) * k + t]);
      }
      const float* ut = &u[size_t(t) * k];
      for (int r = 0; r < rows; ++r) {
        float* wr = &wb[size_t(r) * k];
        const size_t at = size_t(r) * groups + gi;
        const Code c = QuantizeOne(wr[t], d[at], mn[at], options.with_min);
        out.u[size_t(r0 + r) * k + i] = c.u;
        err[r] = (wr[t] - c.value) / ut[t];
      }
      // The columns not yet quantized absorb the rounding error.
      for (int r = 0; r < rows; ++r) {
        float* wr = &wb[size_t(r) * k];
        const float e = err[r];
        for (int j = t + 1; j < k; ++j) wr[j] -= e * ut[j];
      }
    }
    w.Done(r0, r0 + rows);
  }
  return out;
}

double W4OutputError(const WeightRows& w, const W4Plain& q,
                     absl::Span<const float> gram) {
  const int k = w.cols();
  std::vector<float> row(k), deq(k);
  std::vector<double> delta(k);
  double total = 0;
  for (int r = 0; r < w.rows(); ++r) {
    w.Row(r, row.data());
    DequantizeW4Row(q, r, deq.data());
    for (int i = 0; i < k; ++i) delta[i] = double(row[i]) - deq[i];
    for (int i = 0; i < k; ++i) {
      double s = 0;
      for (int j = 0; j < k; ++j)
        s += double(gram[size_t(i) * k + j]) * delta[j];
      total += delta[i] * s;
    }
  }
  return total;
}

}  // namespace spikeserve
