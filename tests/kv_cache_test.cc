#include "runtime/model/kv_cache.h"

#include "gtest/gtest.h"

namespace spikeserve {
namespace {

std::unique_ptr<KvPool> Pool(int blocks, int block_tokens = 4) {
  auto p = KvPool::Create({.n_layers = 2,
                           .kv_dim = 3,
                           .block_tokens = block_tokens,
                           .num_blocks = blocks});
  EXPECT_TRUE(p.ok());
  return *std::move(p);
}

TEST(KvPool, AllocatesUntilExhaustedAndRecycles) {
  auto pool = Pool(3);
  std::vector<int> got;
  for (int i = 0; i < 3; ++i) got.push_back(*pool->Allocate());
  EXPECT_EQ(pool->free_blocks(), 0);
  EXPECT_EQ(pool->Allocate().status().code(),
            absl::StatusCode::kResourceExhausted);
  pool->Ref(got[1]);
  pool->Unref(got[1]);
  EXPECT_EQ(pool->free_blocks(), 0);  // still referenced once
  pool->Unref(got[1]);
  EXPECT_EQ(pool->free_blocks(), 1);
  EXPECT_EQ(*pool->Allocate(), got[1]);
}

TEST(KvPool, RejectsBadOptions) {
  EXPECT_FALSE(
      KvPool::Create({.n_layers = 0, .kv_dim = 3, .num_blocks = 1}).ok());
  EXPECT_FALSE(
      KvPool::Create({.n_layers = 1, .kv_dim = 3, .num_blocks = 0}).ok());
}

TEST(SequenceKv, ReserveIsAllOrNothing) {
  auto pool = Pool(3);
  SequenceKv s(pool.get());
  EXPECT_TRUE(s.Reserve(5).ok());  // 2 blocks
  EXPECT_EQ(pool->free_blocks(), 1);
  EXPECT_EQ(s.Reserve(13).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(pool->free_blocks(), 1);
  EXPECT_EQ(s.capacity(), 8);
  s.Release();
  EXPECT_EQ(pool->free_blocks(), 3);
}

// A shared prefix of 6 tokens (one full and one partial block of 4) is
// referenced, not copied, by every sequence; own positions start after it.
TEST(SequenceKv, SharedPrefixIsReferencedNotCopied) {
  auto pool = Pool(8);
  const int b0 = *pool->Allocate(), b1 = *pool->Allocate();
  // Layer 1, position 5 = block b1 slot 1: K element 2 (K is stored
  // transposed, [kv_dim][block_tokens]) and V element 2.
  pool->k(b1, 1)[2 * 4 + 1] = 42.0f;
  pool->v(b1, 1)[1 * 3 + 2] = 43.0f;
  {
    SequenceKv a(pool.get()), b(pool.get());
    ASSERT_TRUE(a.AttachPrefix({b0, b1}, 6).ok());
    ASSERT_TRUE(b.AttachPrefix({b0, b1}, 6).ok());
    EXPECT_EQ(pool->refcount(b0), 3);
    EXPECT_EQ(a.length(), 6);
    float k[3];
    a.ReadK(1, 5, k);
    EXPECT_EQ(k[2], 42.0f);
    EXPECT_EQ(a.v_row(1, 5)[2], 43.0f);
    EXPECT_EQ(b.v_row(1, 5), a.v_row(1, 5));  // same memory
    ASSERT_TRUE(a.Reserve(7).ok());
    EXPECT_EQ(a.own_blocks().size(), 1u);
    EXPECT_NE(a.v_row(0, 6), b.v_row(0, 5));
    EXPECT_FALSE(a.AttachPrefix({b0}, 4).ok());  // not empty
  }
  EXPECT_EQ(pool->refcount(b0), 1);
  EXPECT_EQ(pool->free_blocks(), 6);
}

// K written as a row reads back as that row from the transposed layout, and
// Segments splits positions at block ends and at the end of a partial
// prefix block (the sequence's own blocks start at slot 0).
TEST(SequenceKv, WriteKRoundTripsAndSegmentsFollowBlocks) {
  auto pool = Pool(8);
  const int b0 = *pool->Allocate(), b1 = *pool->Allocate();
  SequenceKv a(pool.get());
  ASSERT_TRUE(a.AttachPrefix({b0, b1}, 6).ok());
  ASSERT_TRUE(a.Reserve(15).ok());
  for (int pos = 0; pos < 15; ++pos) {
    const float row[3] = {float(pos), pos + 0.25f, pos + 0.5f};
    a.WriteK(0, pos, row);
  }
  for (int pos = 0; pos < 15; ++pos) {
    float row[3];
    a.ReadK(0, pos, row);
    EXPECT_EQ(row[0], float(pos));
    EXPECT_EQ(row[2], pos + 0.5f);
  }
  std::vector<SequenceKv::Segment> segs;
  a.Segments(15, &segs);
  // prefix: [0,4) in b0, [4,6) in b1; own: [6,10), [10,14), [14,15).
  const std::vector<std::pair<int, int>> want = {
      {0, 4}, {4, 2}, {6, 4}, {10, 4}, {14, 1}};
  ASSERT_EQ(segs.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(segs[i].pos0, want[i].first) << i;
    EXPECT_EQ(segs[i].n, want[i].second) << i;
  }
  EXPECT_EQ(segs[1].block, b1);
  EXPECT_EQ(segs[1].slot0, 0);
  EXPECT_EQ(segs[2].block, a.own_blocks()[0]);
  EXPECT_EQ(segs[2].slot0, 0);
  // Position 5 (b1 slot 1) read through the segment and the layout.
  EXPECT_EQ(pool->k(b1, 0)[2 * 4 + 1], 5.5f);
}

TEST(SequenceKv, AttachPrefixChecksBlockCount) {
  auto pool = Pool(4);
  SequenceKv s(pool.get());
  EXPECT_EQ(s.AttachPrefix({0}, 6).code(), absl::StatusCode::kInvalidArgument);
}

// A BF16 pool stores half the bytes and rounds to nearest: values with at
// most 8 significant bits come back exactly; near 1 the spacing is 2^-7, so
// 1 + 2^-9 rounds down to 1 and 1 + 3·2^-9 up to 1 + 2^-7.
TEST(SequenceKv, Bf16PoolRoundsKAndV) {
  auto fp32 = KvPool::Create(
      {.n_layers = 2, .kv_dim = 4, .block_tokens = 4, .num_blocks = 2});
  auto bf16 = KvPool::Create({.n_layers = 2,
                              .kv_dim = 4,
                              .block_tokens = 4,
                              .num_blocks = 2,
                              .bf16 = true});
  ASSERT_TRUE(fp32.ok() && bf16.ok());
  EXPECT_EQ((*bf16)->bytes() * 2, (*fp32)->bytes());
  EXPECT_EQ((*bf16)->bytes_per_token(), size_t(2 * 2 * 4 * 2));
  SequenceKv kv(bf16->get());
  ASSERT_TRUE(kv.Reserve(6).ok());
  const float in[4] = {1.5f, -2.25f, 1.0f + 0x1p-9f, 1.0f + 3 * 0x1p-9f};
  const float want[4] = {1.5f, -2.25f, 1.0f, 1.0f + 0x1p-7f};
  kv.WriteK(1, 5, in);
  kv.WriteV(1, 5, in);
  float k[4], v[4];
  kv.ReadK(1, 5, k);
  kv.ReadV(1, 5, v);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(k[i], want[i]) << i;
    EXPECT_EQ(v[i], want[i]) << i;
  }
}

}  // namespace
}  // namespace spikeserve
