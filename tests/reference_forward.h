// A deliberately naive LLaMA forward pass in double precision, written from
// the architecture's definition (not from runtime/model/model.cc): full
// recompute of the whole token sequence, no KV cache, no fusion. Used as the
// scalar reference for the runtime's fast path on tiny test models.
#ifndef SPIKESERVE_TESTS_REFERENCE_FORWARD_H_
#define SPIKESERVE_TESTS_REFERENCE_FORWARD_H_

#include <cmath>
#include <vector>

#include "runtime/model/model_config.h"
#include "runtime/model/weights.h"

namespace spikeserve::testing {

// Returns logits [tokens.size()][vocab] for every position.
inline std::vector<std::vector<double>> ReferenceForward(
    const ModelConfig& c, const ModelWeights& w,
    const std::vector<int32_t>& tokens) {
  using Vec = std::vector<double>;
  const int T = int(tokens.size()), H = c.hidden, hd = c.head_dim;
  auto rmsnorm = [&](const Vec& x, const std::vector<float>& g) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double r = 1.0 / std::sqrt(ss / x.size() + c.rms_eps);
    Vec y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * g[i];
    return y;
  };
  // y = W x for rows [row0, row0 + n) of W.
  auto matvec = [](const Matrix& W, const Vec& x, int row0, int n) {
    Vec y(n, 0.0);
    for (int r = 0; r < n; ++r) {
      const float* wr = W.row(row0 + r);
      for (int k = 0; k < W.cols; ++k) y[r] += wr[k] * x[k];
    }
    return y;
  };
  // Pairs (2i, 2i+1), or (i, i + dims/2) in the NeoX order (Qwen2); the
  // angle divided by LLaMA 3's per-frequency factor and scaled linearly.
  auto rope = [&](Vec& v, int heads, int pos) {
    const int half = c.rope_dims / 2;
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < half; ++i) {
        double theta =
            pos * std::pow(double(c.rope_base), -2.0 * i / c.rope_dims);
        if (!c.rope_freq_factors.empty()) theta /= c.rope_freq_factors[i];
        theta *= c.rope_freq_scale;
        const int ia = c.rope_neox ? i : 2 * i;
        const int ib = c.rope_neox ? i + half : 2 * i + 1;
        double& a = v[h * hd + ia];
        double& b = v[h * hd + ib];
        const double a0 = a, b0 = b;
        a = a0 * std::cos(theta) - b0 * std::sin(theta);
        b = a0 * std::sin(theta) + b0 * std::cos(theta);
      }
    }
  };
  std::vector<Vec> x(T, Vec(H));
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < H; ++i) x[t][i] = w.token_embd.row(tokens[t])[i];
  }
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w.layers[l];
    std::vector<Vec> q(T), k(T), v(T);
    for (int t = 0; t < T; ++t) {
      const Vec xn = rmsnorm(x[t], L.attn_norm);
      q[t] = matvec(L.wqkv, xn, 0, c.q_dim());
      k[t] = matvec(L.wqkv, xn, c.q_dim(), c.kv_dim());
      v[t] = matvec(L.wqkv, xn, c.q_dim() + c.kv_dim(), c.kv_dim());
      if (!L.bqkv.empty()) {  // Qwen2: q, k, v biases, before RoPE
        for (int i = 0; i < c.q_dim(); ++i) q[t][i] += L.bqkv[i];
        for (int i = 0; i < c.kv_dim(); ++i) {
          k[t][i] += L.bqkv[c.q_dim() + i];
          v[t][i] += L.bqkv[c.q_dim() + c.kv_dim() + i];
        }
      }
      rope(q[t], c.n_heads, t);
      rope(k[t], c.n_kv_heads, t);
    }
    for (int t = 0; t < T; ++t) {
      Vec att(c.q_dim(), 0.0);
      for (int h = 0; h < c.n_heads; ++h) {
        const int g = h / (c.n_heads / c.n_kv_heads);
        Vec s(t + 1);
        double mx = -1e300;
        for (int p = 0; p <= t; ++p) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += q[t][h * hd + i] * k[p][g * hd + i];
          s[p] = d / std::sqrt(double(hd));
          mx = std::max(mx, s[p]);
        }
        double z = 0;
        for (double& e : s) z += (e = std::exp(e - mx));
        for (int p = 0; p <= t; ++p) {
          for (int i = 0; i < hd; ++i) {
            att[h * hd + i] += s[p] / z * v[p][g * hd + i];
          }
        }
      }
      const Vec o = matvec(L.wo, att, 0, H);
      for (int i = 0; i < H; ++i) x[t][i] += o[i];
      const Vec xn = rmsnorm(x[t], L.ffn_norm);
      const Vec gate = matvec(L.w_gate_up, xn, 0, c.ffn);
      const Vec up = matvec(L.w_gate_up, xn, c.ffn, c.ffn);
      Vec hh(c.ffn);
      for (int i = 0; i < c.ffn; ++i) {
        hh[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
      }
      const Vec d = matvec(L.w_down, hh, 0, H);
      for (int i = 0; i < H; ++i) x[t][i] += d[i];
    }
  }
  std::vector<Vec> logits(T);
  for (int t = 0; t < T; ++t) {
    logits[t] =
        matvec(w.lm_head(), rmsnorm(x[t], w.output_norm), 0, c.vocab_size);
  }
  return logits;
}

}  // namespace spikeserve::testing

#endif  // SPIKESERVE_TESTS_REFERENCE_FORWARD_H_
