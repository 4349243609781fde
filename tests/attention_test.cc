#include "runtime/model/attention.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace spikeserve {
namespace {

struct Case {
  int heads, kv_heads, head_dim, start, n_new;
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.heads << "h/" << c.kv_heads << "kv, dim " << c.head_dim << ", start "
      << c.start << ", rows " << c.n_new;
}

class AttentionTest : public ::testing::TestWithParam<Case> {};

// The attention pass agrees with the double-precision reference: head_dim
// a multiple of 32 (64, 128: whole AVX-512 passes over V), of 8 only (24,
// 72: masked or scalar tails) or of neither (20), row counts below, at and
// past a tile (8), position counts with and without a tail past a block.
// Both pool precisions: a BF16 pool's K and V are widened exactly, so the
// reference (which reads them back widened) is matched as closely.
TEST_P(AttentionTest, MatchesReference) {
  const Case& p = GetParam();
  for (bool bf16 : {false, true}) {
    SCOPED_TRACE(bf16 ? "bf16 pool" : "fp32 pool");
    ModelConfig c;
    c.n_layers = 2;
    c.n_heads = p.heads;
    c.n_kv_heads = p.kv_heads;
    c.head_dim = p.head_dim;
    auto pool = KvPool::Create({.n_layers = 2,
                                .kv_dim = c.kv_dim(),
                                .block_tokens = 16,
                                .num_blocks = 32,
                                .bf16 = bf16});
    ASSERT_TRUE(pool.ok());
    SequenceKv kv(pool->get());
    const int total = p.start + p.n_new;
    ASSERT_TRUE(kv.Reserve(total).ok());
    std::mt19937 rng(5);
    std::normal_distribution<float> d(0, 2);
    std::vector<float> krow(c.kv_dim()), vrow(c.kv_dim());
    for (int pos = 0; pos < total; ++pos) {
      for (int i = 0; i < c.kv_dim(); ++i) {
        krow[i] = d(rng);
        vrow[i] = d(rng);
      }
      kv.WriteK(1, pos, krow.data());
      kv.WriteV(1, pos, vrow.data());
    }
    std::vector<float> q(size_t(p.n_new) * c.q_dim());
    for (float& x : q) x = d(rng);
    std::vector<float> out(q.size()), ref(q.size());
    AttentionScratch scratch;
    CausalAttention(c, kv, 1, q.data(), p.n_new, p.start, out.data(), &scratch);
    ReferenceAttention(c, kv, 1, q.data(), p.n_new, p.start, ref.data());
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_NEAR(out[i], ref[i], 1e-4) << "element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionTest,
    ::testing::Values(Case{4, 2, 16, 0, 1}, Case{4, 2, 16, 30, 1},
                      Case{9, 3, 64, 100, 3}, Case{9, 3, 64, 0, 8},
                      Case{4, 4, 32, 17, 40}, Case{8, 1, 64, 5, 64},
                      Case{2, 1, 24, 20, 2},  // head_dim not a multiple of 16
                      Case{2, 1, 20, 21, 2},  // nor of 8: portable loops
                      Case{4, 2, 72, 6, 1}, Case{2, 2, 128, 33, 3},
                      // decode long enough to split heads over threads
                      Case{9, 3, 64, 400, 1}, Case{9, 3, 64, 300, 4},
                      // decode rows whose KV groups are wider than a tile
                      // (two tiles of 8 heads; 8 + 4)
                      Case{16, 1, 32, 70, 1}, Case{24, 2, 64, 40, 1}));

// A decode batch of several sequences (different lengths and row counts)
// in one Attention pass equals the reference of each sequence alone:
// a batch whose sequences are each too short to split over the team
// (SmolLM2-135M's 9 heads of 64 at 40-200 positions) and one past a single
// sequence's threshold.
TEST(Attention, BatchEqualsEachSequenceAlone) {
  ModelConfig c;
  c.n_layers = 2;
  c.n_heads = 9;
  c.n_kv_heads = 3;
  c.head_dim = 64;
  auto pool = KvPool::Create({.n_layers = 2,
                              .kv_dim = c.kv_dim(),
                              .block_tokens = 16,
                              .num_blocks = 256});
  ASSERT_TRUE(pool.ok());
  for (const std::vector<std::pair<int, int>>& batch :
       {std::vector<std::pair<int, int>>{{40, 1},
                                         {200, 1},
                                         {7, 3},
                                         {120, 1},
                                         {0, 1},
                                         {65, 2},
                                         {150, 1},
                                         {99, 1}},
        std::vector<std::pair<int, int>>{{500, 1}, {3, 1}}}) {
    std::mt19937 rng(7);
    std::normal_distribution<float> d(0, 2);
    std::vector<std::unique_ptr<SequenceKv>> kvs;
    std::vector<std::vector<float>> qs, outs;
    std::vector<AttentionQuery> queries;
    std::vector<float> krow(c.kv_dim());
    for (const auto& [start, n_new] : batch) {
      kvs.push_back(std::make_unique<SequenceKv>(pool->get()));
      SequenceKv& kv = *kvs.back();
      ASSERT_TRUE(kv.Reserve(start + n_new).ok());
      for (int pos = 0; pos < start + n_new; ++pos) {
        for (int i = 0; i < c.kv_dim(); ++i) {
          krow[i] = d(rng);
          kv.v_row(1, pos)[i] = d(rng);
        }
        kv.WriteK(1, pos, krow.data());
      }
      qs.emplace_back(size_t(n_new) * c.q_dim());
      for (float& x : qs.back()) x = d(rng);
      outs.emplace_back(qs.back().size(), -1.0f);
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      queries.push_back({kvs[i].get(), qs[i].data(), batch[i].second,
                         batch[i].first, outs[i].data()});
    }
    AttentionScratch scratch;
    Attention(c, 1, queries, &scratch);
    for (size_t b = 0; b < batch.size(); ++b) {
      std::vector<float> ref(qs[b].size());
      ReferenceAttention(c, *kvs[b], 1, qs[b].data(), batch[b].second,
                         batch[b].first, ref.data());
      for (size_t i = 0; i < ref.size(); ++i) {
        ASSERT_NEAR(outs[b][i], ref[i], 1e-4)
            << "sequence " << b << " element " << i;
      }
    }
  }
}

// Every tile kernel this CPU runs (AVX-512, AVX2) equals the scalar fma
// chains bit for bit: row counts below, at and past a register tile (6 on
// AVX-512, 8 on AVX2) up to a whole tile, K runs short of a vector and
// more runs than one pass takes (4 on AVX-512), V runs across the 64-
// position chunks, head sizes with and without vector tails, and rows that
// see every position, a causal diagonal (rows past others' last position)
// or nothing at all.
TEST(AttentionTile, KernelsEqualScalarBitForBit) {
  const AttentionTileKernels* variants[4];
  const int nv = AttentionTileVariants(variants);
  ASSERT_STREQ(variants[0]->name, "scalar");
  std::mt19937 rng(11);
  std::normal_distribution<float> d(0, 2);
  const std::vector<std::vector<int>> run_sets = {
      {1},
      {5},
      {16},
      {16, 16, 16, 16, 16},
      {3, 16, 13, 16, 8, 16, 16, 16, 16, 2}};
  for (int hd : {20, 24, 64, 72, 128}) {
    for (int rows : {1, 2, 5, 6, 7, 8, 9, 13, kAttentionTileRows}) {
      for (const std::vector<int>& ns : run_sets) {
        int total = 0;
        for (int n : ns) total += n;
        const int q_stride = hd + 3, s_stride = total + 2;
        // Each run in its own buffer (strides past its width).
        std::vector<std::vector<float>> kb, vb;
        std::vector<KvRun> k_runs, v_runs;
        for (int n : ns) {
          kb.emplace_back(size_t(hd) * (n + 7));
          vb.emplace_back(size_t(n) * (hd + 5));
          for (float& x : kb.back()) x = d(rng);
          for (float& x : vb.back()) x = d(rng);
          k_runs.push_back({kb.back().data(), n + 7, n});
          v_runs.push_back({vb.back().data(), hd + 5, n});
        }
        std::vector<float> q(rows * q_stride), p(rows * s_stride);
        for (float& x : q) x = d(rng);
        for (float& x : p) x = d(rng);
        std::vector<float> o0(rows * q_stride);
        for (float& x : o0) x = d(rng);  // chains continue from o
        std::vector<std::vector<int>> vis_sets(4, std::vector<int>(rows));
        for (int r = 0; r < rows; ++r) {
          vis_sets[0][r] = total;                               // all
          vis_sets[1][r] = std::max(0, total - rows + 1 + r);   // causal
          vis_sets[2][r] = std::min(total, r);                  // from 0
          vis_sets[3][r] = std::min(total, total / 2 + 3 * r);  // steps
        }
        std::vector<float> s_ref(rows * s_stride, 0);
        variants[0]->scores(k_runs.data(), int(ns.size()), q.data(), q_stride,
                            rows, hd, 0.125f, s_ref.data(), s_stride);
        for (int k = 1; k < nv; ++k) {
          std::vector<float> s(rows * s_stride, 0);
          variants[k]->scores(k_runs.data(), int(ns.size()), q.data(), q_stride,
                              rows, hd, 0.125f, s.data(), s_stride);
          ASSERT_EQ(0, std::memcmp(s.data(), s_ref.data(), s.size() * 4))
              << variants[k]->name << " scores, hd " << hd << " rows " << rows
              << " runs " << ns.size();
        }
        for (size_t vi = 0; vi < vis_sets.size(); ++vi) {
          const int* vis = vis_sets[vi].data();
          std::vector<float> o_ref = o0;
          variants[0]->accumulate(v_runs.data(), int(ns.size()), p.data(),
                                  s_stride, vis, rows, hd, o_ref.data(),
                                  q_stride);
          // A row that sees nothing keeps its chain's start.
          for (int r = 0; r < rows; ++r) {
            if (vis[r] == 0) {
              ASSERT_EQ(0, std::memcmp(o_ref.data() + r * q_stride,
                                       o0.data() + r * q_stride, hd * 4));
            }
          }
          for (int k = 1; k < nv; ++k) {
            std::vector<float> o = o0;
            variants[k]->accumulate(v_runs.data(), int(ns.size()), p.data(),
                                    s_stride, vis, rows, hd, o.data(),
                                    q_stride);
            ASSERT_EQ(0, std::memcmp(o.data(), o_ref.data(), o.size() * 4))
                << variants[k]->name << " sums, hd " << hd << " rows " << rows
                << " runs " << ns.size() << " visibility " << vi;
          }
        }
      }
    }
  }
}

// Batch invariance: a sequence's attention output is bit-identical whether
// its rows run in one call of 70 rows, in chunks of 1, 3, 8, 16 or 64 (the
// KV of earlier chunks then comes from the cache), or beside other
// sequences' rows in the same call. One-row chunks (decode) take a KV
// group's heads per tile, longer ones one head: 3 heads per group, and 12
// (a group split over two tiles, 8 + 4).
TEST(Attention, RowsAreBitIdenticalWhateverTheChunking) {
  for (const auto& [heads, kv_heads, bf16] :
       {std::tuple{9, 3, false}, std::tuple{9, 3, true},
        std::tuple{12, 1, false}}) {
    SCOPED_TRACE(::testing::Message()
                 << heads << " heads / " << kv_heads
                 << (bf16 ? ", bf16 pool" : ", fp32 pool"));
    ModelConfig c;
    c.n_layers = 1;
    c.n_heads = heads;
    c.n_kv_heads = kv_heads;
    c.head_dim = 64;
    auto pool = KvPool::Create({.n_layers = 1,
                                .kv_dim = c.kv_dim(),
                                .block_tokens = 16,
                                .num_blocks = 64,
                                .bf16 = bf16});
    ASSERT_TRUE(pool.ok());
    // A 3-token shared prefix block (like QFeP's), then 70 own positions.
    const int kPrefix = 3, kRows = 70, total = kPrefix + kRows;
    const int prefix_block = *(*pool)->Allocate();
    SequenceKv kv(pool->get()), other(pool->get());
    ASSERT_TRUE(kv.AttachPrefix({prefix_block}, kPrefix).ok());
    ASSERT_TRUE(kv.Reserve(total).ok());
    ASSERT_TRUE(other.Reserve(40).ok());
    std::mt19937 rng(3);
    std::normal_distribution<float> d(0, 2);
    std::vector<float> krow(c.kv_dim()), vrow(c.kv_dim());
    for (SequenceKv* s : {&kv, &other}) {
      for (int pos = 0; pos < (s == &kv ? total : 40); ++pos) {
        for (int i = 0; i < c.kv_dim(); ++i) {
          krow[i] = d(rng);
          vrow[i] = d(rng);
        }
        s->WriteK(0, pos, krow.data());
        s->WriteV(0, pos, vrow.data());
      }
    }
    std::vector<float> q(size_t(kRows) * c.q_dim()), q2(size_t(5) * c.q_dim());
    for (float& x : q) x = d(rng);
    for (float& x : q2) x = d(rng);
    AttentionScratch scratch;
    std::vector<float> whole(q.size());
    CausalAttention(c, kv, 0, q.data(), kRows, kPrefix, whole.data(), &scratch);
    for (int chunk : {1, 3, 8, 16, 64}) {
      std::vector<float> out(q.size(), -7.0f), out2(q2.size());
      for (int r = 0; r < kRows; r += chunk) {
        const int n = std::min(chunk, kRows - r);
        const size_t off = size_t(r) * c.q_dim();
        // The other sequence's 5 rows share every call.
        const AttentionQuery batch[2] = {
            {&other, q2.data(), 5, 35, out2.data()},
            {&kv, q.data() + off, n, kPrefix + r, out.data() + off}};
        Attention(c, 0, batch, &scratch);
      }
      ASSERT_EQ(0, std::memcmp(out.data(), whole.data(), out.size() * 4))
          << "chunks of " << chunk;
    }
  }
}

}  // namespace
}  // namespace spikeserve
