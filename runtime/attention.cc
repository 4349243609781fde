#include "runtime/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "dnnl.hpp"
#include "runtime/attention_decode_avx2.h"
#include "runtime/cpu_dispatch.h"
#include "runtime/ops.h"

namespace spikeserve {
namespace {

// Decode attention forks the OpenMP team above this many multiply-adds:
// SmolLM2-135M (9 heads of 64) crosses it at ~230 cached positions, where
// one layer's pass takes ~10 us on one core; below, a fork and join (a few
// us) would cost more than it saves.
constexpr int64_t kParallelDecodeMacs = int64_t(1) << 18;

// 16 independent partial sums: without -ffast-math a single running sum
// cannot be vectorized (float addition does not reassociate), and its
// dependency chain costs one FMA latency per element (~4 cycles, 256 per
// 64-wide head). Lanes make it one 16-wide FMA per 16 elements.
SPIKESERVE_CPU_CLONES float Dot(const float* a, const float* b, int n) {
  constexpr int kLanes = 16;
  float lane[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] += a[i + j] * b[i + j];
  }
  float acc = 0;
  for (; i < n; ++i) acc += a[i] * b[i];
  for (int j = 0; j < kLanes; ++j) acc += lane[j];
  return acc;
}

SPIKESERVE_CPU_CLONES void Axpy(float a, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

// Copies positions [0, n_pos) of `layer` into contiguous [n_pos][kv_dim].
void Gather(const SequenceKv& kv, int layer, int n_pos, int kv_dim,
            std::vector<float>* k, std::vector<float>* v) {
  k->resize(size_t(n_pos) * kv_dim);
  v->resize(size_t(n_pos) * kv_dim);
  for (int p = 0; p < n_pos; ++p) {
    std::memcpy(k->data() + size_t(p) * kv_dim, kv.k_row(layer, p),
                kv_dim * sizeof(float));
    std::memcpy(v->data() + size_t(p) * kv_dim, kv.v_row(layer, p),
                kv_dim * sizeof(float));
  }
}

}  // namespace

void DecodeAttention(const ModelConfig& c, int layer,
                     absl::Span<const DecodeQuery> queries,
                     AttentionScratch* scratch) {
  const int hd = c.head_dim, q_dim = c.q_dim();
  const float scale = 1.0f / std::sqrt(float(hd));
  // Rows are read in place from the KV blocks (a gather would copy the
  // whole cache of the layer every step); their addresses once per layer
  // and sequence, not once per head. Query i's scores are [pairs][n_pos]
  // from score0[i].
  std::vector<size_t>& row0 = scratch->row0;
  std::vector<size_t>& score0 = scratch->score0;
  std::vector<int>& pair0 = scratch->pair0;
  const size_t nq = queries.size();
  row0.assign(nq + 1, 0);
  score0.assign(nq + 1, 0);
  pair0.assign(nq + 1, 0);
  int64_t macs = 0;
  for (size_t i = 0; i < nq; ++i) {
    const DecodeQuery& dq = queries[i];
    const int n_pos = dq.start + dq.n_new;
    const int pairs = dq.n_new * c.n_heads;
    row0[i + 1] = row0[i] + n_pos;
    pair0[i + 1] = pair0[i] + pairs;
    score0[i + 1] = score0[i] + size_t(pairs) * n_pos;
    macs += int64_t(pairs) * n_pos * 2 * hd;
  }
  scratch->k_rows.resize(row0[nq]);
  scratch->v_rows.resize(row0[nq]);
  scratch->scores.resize(score0[nq]);
  for (size_t i = 0; i < nq; ++i) {
    const DecodeQuery& dq = queries[i];
    for (int p = 0; p < dq.start + dq.n_new; ++p) {
      scratch->k_rows[row0[i] + p] = dq.kv->k_row(layer, p);
      scratch->v_rows[row0[i] + p] = dq.kv->v_row(layer, p);
    }
  }
  // (query, row, head) triples are independent, each with its own score
  // row. Split them over the team only when the pass is long enough to pay
  // for the fork (2·hd MACs per pair and position).
  const bool parallel = macs >= kParallelDecodeMacs;
  const bool avx2 = DecodeAttentionAvx2Supported(hd);
  const int total_pairs = pair0[nq];
#pragma omp parallel for schedule(static) if (parallel)
  for (int t = 0; t < total_pairs; ++t) {
    const size_t qi =
        std::upper_bound(pair0.begin(), pair0.end(), t) - pair0.begin() - 1;
    const DecodeQuery& dq = queries[qi];
    const int ih = t - pair0[qi];
    const int i = ih / c.n_heads, h = ih % c.n_heads;
    const int n_pos = dq.start + dq.n_new;
    const int visible = dq.start + i + 1;
    const int g = h / c.group_size();
    const float* const* krow = scratch->k_rows.data() + row0[qi];
    const float* const* vrow = scratch->v_rows.data() + row0[qi];
    float* s = scratch->scores.data() + score0[qi] + size_t(ih) * n_pos;
    const float* qh = dq.q + size_t(i) * q_dim + h * hd;
    float* o = dq.out + size_t(i) * q_dim + h * hd;
    if (avx2) {
      HeadScoresAvx2(qh, krow, g * hd, visible, hd, scale, s);
      Softmax(s, visible);
      HeadWeightedSumAvx2(s, vrow, g * hd, visible, hd, o);
      continue;
    }
    for (int p = 0; p < visible; ++p) {
      s[p] = Dot(qh, krow[p] + g * hd, hd) * scale;
    }
    Softmax(s, visible);
    std::fill(o, o + hd, 0.0f);
    for (int p = 0; p < visible; ++p) {
      Axpy(s[p], vrow[p] + g * hd, o, hd);
    }
  }
}

void CausalAttention(const ModelConfig& c, const SequenceKv& kv, int layer,
                     const float* q, int n_new, int start, float* out,
                     AttentionScratch* scratch) {
  const int hd = c.head_dim, q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const int n_pos = start + n_new;
  const float scale = 1.0f / std::sqrt(float(hd));

  if (n_new < kAttentionGemmMinRows) {
    const DecodeQuery one{&kv, q, n_new, start, out};
    DecodeAttention(c, layer, absl::MakeConstSpan(&one, 1), scratch);
    return;
  }

  Gather(kv, layer, n_pos, kv_dim, &scratch->k, &scratch->v);
  const float* K = scratch->k.data();
  const float* V = scratch->v.data();

  // Prefill chunk: per head and block of kRowBlock rows, S = Q_h · K_gᵀ
  // over only the positions the block's last row can see, causal softmax
  // (entries past each row's own position zeroed), O_h = P · V_g. Causal
  // blocking skips about half of the square's work.
  constexpr int kRowBlock = 64;
  const size_t per_head = size_t(std::min(n_new, kRowBlock)) * n_pos;
  scratch->scores.resize(per_head * c.n_heads);
  // Heads are independent: one OpenMP thread per head (the sgemm calls
  // inside then run single-threaded, as nested regions do).
#pragma omp parallel for schedule(static)
  for (int h = 0; h < c.n_heads; ++h) {
    float* S = scratch->scores.data() + per_head * h;
    const int g = h / c.group_size();
    for (int r0 = 0; r0 < n_new; r0 += kRowBlock) {
      const int rows = std::min(kRowBlock, n_new - r0);
      const int width = start + r0 + rows;  // columns the block can see
      dnnl::sgemm('N', 'T', rows, width, hd, scale,
                  q + size_t(r0) * q_dim + h * hd, q_dim, K + g * hd, kv_dim,
                  0.0f, S, width);
      for (int i = 0; i < rows; ++i) {
        float* row = S + size_t(i) * width;
        const int visible = start + r0 + i + 1;
        Softmax(row, visible);
        std::fill(row + visible, row + width, 0.0f);
      }
      dnnl::sgemm('N', 'N', rows, hd, width, 1.0f, S, width, V + g * hd, kv_dim,
                  0.0f, out + size_t(r0) * q_dim + h * hd, q_dim);
    }
  }
}

void ReferenceAttention(const ModelConfig& c, const SequenceKv& kv, int layer,
                        const float* q, int n_new, int start, float* out) {
  const int hd = c.head_dim, q_dim = c.q_dim();
  std::vector<double> s;
  for (int i = 0; i < n_new; ++i) {
    const int visible = start + i + 1;
    for (int h = 0; h < c.n_heads; ++h) {
      const int g = h / c.group_size();
      s.assign(visible, 0.0);
      double mx = -1e300;
      for (int p = 0; p < visible; ++p) {
        const float* k = kv.k_row(layer, p) + g * hd;
        for (int d = 0; d < hd; ++d)
          s[p] += double(q[i * q_dim + h * hd + d]) * k[d];
        s[p] /= std::sqrt(double(hd));
        mx = std::max(mx, s[p]);
      }
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int d = 0; d < hd; ++d) {
        double acc = 0;
        for (int p = 0; p < visible; ++p)
          acc += s[p] / sum * kv.v_row(layer, p)[g * hd + d];
        out[i * q_dim + h * hd + d] = float(acc);
      }
    }
  }
}

}  // namespace spikeserve
