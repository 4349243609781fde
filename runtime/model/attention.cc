#include "runtime/model/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "runtime/gguf/dequantize.h"
#include "runtime/model/ops.h"

namespace spikeserve {
namespace {

// The pass forks the OpenMP team from this many multiply-adds on: SmolLM2-
// 135M decode (9 heads of 64) crosses it at ~230 cached positions, where
// one layer's pass takes ~10 us on one core; below, a fork and join (a few
// us) would cost more than it saves.
constexpr int64_t kParallelMacs = int64_t(1) << 18;

// Per-thread score rows of one tile: [rows][visible of its last row].
std::vector<float>& TileScores() {
  thread_local std::vector<float> s;
  return s;
}

// A BF16 pool's K and V of the positions a tile sees, widened to FP32
// (exact) into per-thread buffers: the kernels then run the very same
// arithmetic as on an FP32 pool, so results stay independent of how rows
// are grouped. The tile's K and V runs (views into the pool or these).
struct TileKv {
  std::vector<float> k, v;
  std::vector<KvRun> k_runs, v_runs;
};
TileKv& ThreadTileKv() {
  thread_local TileKv t;
  return t;
}

// The K runs (pieces of at most kKvRunPositions) and V runs of head g over
// positions 0 .. n_vis - 1, from the segments.
void GatherRuns(const KvPool& pool, int layer, int g, int hd,
                const SequenceKv::Segment* segs, int n_segs, int n_vis,
                TileKv* t) {
  const int bt = pool.block_tokens(), kv_dim = pool.kv_dim();
  t->k_runs.clear();
  t->v_runs.clear();
  if (pool.bf16()) {
    t->k.resize(size_t(hd) * n_vis);
    t->v.resize(size_t(n_vis) * hd);
  }
  for (int i = 0; i < n_segs && segs[i].pos0 < n_vis; ++i) {
    const SequenceKv::Segment& sg = segs[i];
    const int n = std::min(sg.n, n_vis - sg.pos0);
    if (n <= 0) continue;
    const float* k = nullptr;
    const float* v = nullptr;
    int k_stride = bt, v_stride = kv_dim;
    if (pool.bf16()) {
      // K: [hd][n] at the segment's first position's slot of the buffer;
      // V: [n][hd] rows.
      float* wk = t->k.data() + size_t(hd) * sg.pos0;
      float* wv = t->v.data() + size_t(sg.pos0) * hd;
      const uint16_t* ks =
          pool.k16(sg.block, layer) + size_t(g) * hd * bt + sg.slot0;
      const uint16_t* vs = pool.v16(sg.block, layer) +
                           size_t(sg.slot0) * kv_dim + size_t(g) * hd;
      for (int d = 0; d < hd; ++d) {
        for (int j = 0; j < n; ++j) {
          wk[size_t(d) * n + j] = Bf16ToFloat(ks[size_t(d) * bt + j]);
        }
      }
      for (int j = 0; j < n; ++j) {
        for (int d = 0; d < hd; ++d) {
          wv[size_t(j) * hd + d] = Bf16ToFloat(vs[size_t(j) * kv_dim + d]);
        }
      }
      k = wk;
      v = wv;
      k_stride = n;
      v_stride = hd;
    } else {
      k = pool.k(sg.block, layer) + size_t(g) * hd * bt + sg.slot0;
      v = pool.v(sg.block, layer) + size_t(sg.slot0) * kv_dim + size_t(g) * hd;
    }
    for (int j = 0; j < n; j += kKvRunPositions) {
      t->k_runs.push_back({k + j, k_stride, std::min(kKvRunPositions, n - j)});
    }
    t->v_runs.push_back({v, v_stride, n});
  }
}

// One tile of query `dq`: rows row0 .. row0 + rows - 1 of head h0, or, for
// one row (rows == 1), heads h0 .. h0 + heads - 1 of one KV group. The
// kernels see `rows * heads` rows either way (heads are adjacent in a q
// row, hd apart); each keeps its own fma chains, so a head's result is the
// same whichever heads or rows share its tile.
void AttendTile(const ModelConfig& c, int layer, const AttentionQuery& dq,
                const SequenceKv::Segment* segs, int n_segs, int row0, int rows,
                int h0, int heads, const AttentionTileKernels& k) {
  const int hd = c.head_dim, q_dim = c.q_dim();
  const int g = h0 / c.group_size();
  const float scale = 1.0f / std::sqrt(float(hd));
  // Kernel row r sees first + r·step positions (step 0: heads of one row);
  // the tile's last row sees n_vis.
  const int kr = rows * heads, step = heads > 1 ? 0 : 1;
  const int stride = heads > 1 ? hd : q_dim;  // between kernel rows
  const int first = dq.start + row0 + 1;
  const int n_vis = first + rows - 1;
  int vis[kAttentionTileRows];
  for (int r = 0; r < kr; ++r) vis[r] = first + r * step;
  TileKv& t = ThreadTileKv();
  GatherRuns(dq.kv->pool(), layer, g, hd, segs, n_segs, n_vis, &t);
  std::vector<float>& sv = TileScores();
  if (sv.size() < size_t(kr) * n_vis) sv.resize(size_t(kr) * n_vis);
  float* S = sv.data();
  const float* q = dq.q + size_t(row0) * q_dim + h0 * hd;
  float* o = dq.out + size_t(row0) * q_dim + h0 * hd;
  // Scores of every row over the positions the last row sees (a row's
  // entries past its own position are computed and never read).
  k.scores(t.k_runs.data(), int(t.k_runs.size()), q, stride, kr, hd, scale, S,
           n_vis);
  for (int r = 0; r < kr; ++r) {
    Softmax(S + size_t(r) * n_vis, vis[r]);
    std::fill(o + size_t(r) * stride, o + size_t(r) * stride + hd, 0.0f);
  }
  // o = Σ_p P[p]·v_p, one fma chain per output in position order.
  k.accumulate(t.v_runs.data(), int(t.v_runs.size()), S, n_vis, vis, kr, hd, o,
               stride);
}

}  // namespace

const char* AttentionKernelName() { return BestAttentionTileKernels().name; }

int64_t PlanAttention(const ModelConfig& c,
                      absl::Span<const AttentionQuery> queries,
                      AttentionScratch* scratch) {
  const size_t nq = queries.size();
  std::vector<SequenceKv::Segment>& segs = scratch->segments;
  std::vector<size_t>& seg0 = scratch->seg0;
  std::vector<AttentionScratch::Item>& items = scratch->items;
  segs.clear();
  seg0.assign(nq + 1, 0);
  items.clear();
  std::vector<SequenceKv::Segment>& one = scratch->one;
  int64_t macs = 0;
  for (size_t i = 0; i < nq; ++i) {
    const AttentionQuery& dq = queries[i];
    dq.kv->Segments(dq.start + dq.n_new, &one);
    segs.insert(segs.end(), one.begin(), one.end());
    seg0[i + 1] = segs.size();
    macs += int64_t(dq.n_new) * (dq.start + (dq.n_new + 1) / 2) * c.n_heads *
            2 * c.head_dim;
  }
  // Tiles in row order, heads inside: consecutive items cost about the
  // same, so the interleaved split below balances a causal chunk (whose
  // later rows see more positions). A one-row tile (a decode step) takes
  // the heads of a KV group together instead: they read the same K and V,
  // and one head alone would leave the kernels a single fma chain, bound
  // by its latency.
  const int gs = c.group_size();
  for (size_t i = 0; i < nq; ++i) {
    for (int r0 = 0; r0 < queries[i].n_new; r0 += kAttentionTileRows) {
      const int rows = std::min(kAttentionTileRows, queries[i].n_new - r0);
      if (rows > 1) {
        for (int h = 0; h < c.n_heads; ++h) {
          items.push_back({int(i), r0, rows, h, 1});
        }
        continue;
      }
      for (int h = 0; h < c.n_heads;) {
        // Heads h .. the end of h's KV group, at most kAttentionTileRows.
        const int heads = std::min(kAttentionTileRows, (h / gs + 1) * gs - h);
        items.push_back({int(i), r0, 1, h, heads});
        h += heads;
      }
    }
  }
  return macs;
}

bool SplitAttention(int64_t macs) { return macs >= kParallelMacs; }

void RunAttentionItems(const ModelConfig& c, int layer,
                       absl::Span<const AttentionQuery> queries,
                       const AttentionScratch& scratch, int i0, int i1) {
  const AttentionTileKernels& k = BestAttentionTileKernels();
  for (int t = i0; t < i1; ++t) {
    const AttentionScratch::Item& it = scratch.items[t];
    const size_t s0 = scratch.seg0[it.query];
    AttendTile(c, layer, queries[it.query], scratch.segments.data() + s0,
               int(scratch.seg0[it.query + 1] - s0), it.row0, it.rows, it.head,
               it.heads, k);
  }
}

void Attention(const ModelConfig& c, int layer,
               absl::Span<const AttentionQuery> queries,
               AttentionScratch* scratch) {
  const int64_t macs = PlanAttention(c, queries, scratch);
  const int n_items = int(scratch->items.size());
  if (!SplitAttention(macs)) {  // without entering OpenMP (parallel_rows.h)
    RunAttentionItems(c, layer, queries, *scratch, 0, n_items);
    return;
  }
#pragma omp parallel for schedule(static, 1)
  for (int t = 0; t < n_items; ++t) {
    RunAttentionItems(c, layer, queries, *scratch, t, t + 1);
  }
}

void CausalAttention(const ModelConfig& c, const SequenceKv& kv, int layer,
                     const float* q, int n_new, int start, float* out,
                     AttentionScratch* scratch) {
  const AttentionQuery one{&kv, q, n_new, start, out};
  Attention(c, layer, absl::MakeConstSpan(&one, 1), scratch);
}

void ReferenceAttention(const ModelConfig& c, const SequenceKv& kv, int layer,
                        const float* q, int n_new, int start, float* out) {
  const int hd = c.head_dim, q_dim = c.q_dim();
  std::vector<double> s;
  std::vector<float> krow(c.kv_dim()), vrow(c.kv_dim());
  for (int i = 0; i < n_new; ++i) {
    const int visible = start + i + 1;
    for (int h = 0; h < c.n_heads; ++h) {
      const int g = h / c.group_size();
      s.assign(visible, 0.0);
      double mx = -1e300;
      for (int p = 0; p < visible; ++p) {
        kv.ReadK(layer, p, krow.data());
        const float* k = krow.data() + g * hd;
        for (int d = 0; d < hd; ++d)
          s[p] += double(q[i * q_dim + h * hd + d]) * k[d];
        s[p] /= std::sqrt(double(hd));
        mx = std::max(mx, s[p]);
      }
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int d = 0; d < hd; ++d) {
        double acc = 0;
        for (int p = 0; p < visible; ++p) {
          kv.ReadV(layer, p, vrow.data());
          acc += s[p] / sum * vrow[g * hd + d];
        }
        out[i * q_dim + h * hd + d] = float(acc);
      }
    }
  }
}

}  // namespace spikeserve
