#include "runtime/attention.h"

#include <memory>
#include <random>
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

// Every fast path agrees with the double-precision reference: decode rows
// (< 8) on the AVX2 loops (head_dim a multiple of 8: 64 = one 8-register
// pass over V, 72 = one pass plus a 1-register one, 128 = two) or the
// portable ones (head_dim 20), position counts with and without a tail
// past the 4-position steps; GEMMs from 8 rows on.
TEST_P(AttentionTest, MatchesReference) {
  const Case& p = GetParam();
  ModelConfig c;
  c.n_layers = 2;
  c.n_heads = p.heads;
  c.n_kv_heads = p.kv_heads;
  c.head_dim = p.head_dim;
  auto pool = KvPool::Create({.n_layers = 2,
                              .kv_dim = c.kv_dim(),
                              .block_tokens = 16,
                              .num_blocks = 32});
  ASSERT_TRUE(pool.ok());
  SequenceKv kv(pool->get());
  const int total = p.start + p.n_new;
  ASSERT_TRUE(kv.Reserve(total).ok());
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0, 2);
  for (int pos = 0; pos < total; ++pos) {
    for (int i = 0; i < c.kv_dim(); ++i) {
      kv.k_row(1, pos)[i] = d(rng);
      kv.v_row(1, pos)[i] = d(rng);
    }
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

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionTest,
    ::testing::Values(Case{4, 2, 16, 0, 1}, Case{4, 2, 16, 30, 1},
                      Case{9, 3, 64, 100, 3}, Case{9, 3, 64, 0, 8},
                      Case{4, 4, 32, 17, 40}, Case{8, 1, 64, 5, 64},
                      Case{2, 1, 24, 20, 2},  // head_dim not a multiple of 16
                      Case{2, 1, 20, 21, 2},  // nor of 8: portable loops
                      Case{4, 2, 72, 6, 1}, Case{2, 2, 128, 33, 3},
                      // decode long enough to split heads over threads
                      Case{9, 3, 64, 400, 1}, Case{9, 3, 64, 300, 4}));

// A decode batch of several sequences (different lengths and row counts)
// in one DecodeAttention pass equals the reference of each sequence alone:
// a batch whose sequences are each too short to split over the team
// (SmolLM2-135M's 9 heads of 64 at 40-200 positions) and one past a single
// sequence's threshold.
TEST(DecodeAttention, BatchEqualsEachSequenceAlone) {
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
    std::vector<DecodeQuery> queries;
    for (const auto& [start, n_new] : batch) {
      kvs.push_back(std::make_unique<SequenceKv>(pool->get()));
      SequenceKv& kv = *kvs.back();
      ASSERT_TRUE(kv.Reserve(start + n_new).ok());
      for (int pos = 0; pos < start + n_new; ++pos) {
        for (int i = 0; i < c.kv_dim(); ++i) {
          kv.k_row(1, pos)[i] = d(rng);
          kv.v_row(1, pos)[i] = d(rng);
        }
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
    DecodeAttention(c, 1, queries, &scratch);
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

}  // namespace
}  // namespace spikeserve
