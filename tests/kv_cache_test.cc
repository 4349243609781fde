#include "runtime/kv_cache.h"

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
  pool->k(b1, 1)[1 * 3 + 2] = 42.0f;  // layer 1, slot 1, element 2 = pos 5
  {
    SequenceKv a(pool.get()), b(pool.get());
    ASSERT_TRUE(a.AttachPrefix({b0, b1}, 6).ok());
    ASSERT_TRUE(b.AttachPrefix({b0, b1}, 6).ok());
    EXPECT_EQ(pool->refcount(b0), 3);
    EXPECT_EQ(a.length(), 6);
    EXPECT_EQ(a.k_row(1, 5)[2], 42.0f);
    EXPECT_EQ(b.k_row(1, 5), a.k_row(1, 5));  // same memory
    ASSERT_TRUE(a.Reserve(7).ok());
    EXPECT_EQ(a.own_blocks().size(), 1u);
    EXPECT_NE(a.k_row(0, 6), b.k_row(0, 5));
    EXPECT_FALSE(a.AttachPrefix({b0}, 4).ok());  // not empty
  }
  EXPECT_EQ(pool->refcount(b0), 1);
  EXPECT_EQ(pool->free_blocks(), 6);
}

TEST(SequenceKv, AttachPrefixChecksBlockCount) {
  auto pool = Pool(4);
  SequenceKv s(pool.get());
  EXPECT_EQ(s.AttachPrefix({0}, 6).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace spikeserve
