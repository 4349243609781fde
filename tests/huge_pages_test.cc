#include "runtime/linear/huge_pages.h"

#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace spikeserve {
namespace {

struct Case {
  size_t bytes;
  bool aligned_2m;  // blocks of 2 MiB or more start on a 2 MiB boundary
};

class HugePagesTest : public ::testing::TestWithParam<Case> {};

// Every byte is ours to write and read back, and large blocks are aligned
// for huge pages.
TEST_P(HugePagesTest, BlocksAreUsableAndAlignedWhereLarge) {
  const Case c = GetParam();
  auto* p = static_cast<uint8_t*>(AllocateHugePageBacked(c.bytes));
  ASSERT_NE(p, nullptr);
  if (c.aligned_2m) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (size_t(2) << 20), 0u);
  }
  for (size_t i = 0; i < c.bytes; ++i) p[i] = uint8_t(i * 7 + 1);
  size_t wrong = 0;
  for (size_t i = 0; i < c.bytes; ++i) wrong += p[i] != uint8_t(i * 7 + 1);
  EXPECT_EQ(wrong, 0u);
  FreeHugePageBacked(p, c.bytes);
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, HugePagesTest,
    ::testing::Values(Case{1, false}, Case{4096, false},
                      Case{(size_t(2) << 20) - 1, false},
                      Case{size_t(2) << 20, true},
                      Case{(size_t(2) << 20) + 1, true},  // a 1-byte tail
                      Case{(size_t(5) << 20) + 12345, true}));

// Small blocks carved from the shared slabs: cache-line aligned, each its
// own bytes (written with its index, read back after all were written),
// across more than one slab (40 blocks of 1 MiB; a slab is 32 MiB), and
// freed in an order that is neither first-in nor last-in first-out; a
// block freed as its slab's last one gives its room to the next.
TEST(HugePages, SmallBlocksAreDisjointAlignedAndReused) {
  if (!SmallBlocksShareHugePages()) {
    GTEST_SKIP() << "small blocks come from malloc in this build";
  }
  constexpr size_t kBytes = (size_t(1) << 20) + 100;
  std::vector<uint8_t*> blocks;
  for (int i = 0; i < 40; ++i) {
    blocks.push_back(static_cast<uint8_t*>(AllocateHugePageBacked(kBytes)));
    ASSERT_EQ(reinterpret_cast<uintptr_t>(blocks.back()) % 64, 0u);
    std::memset(blocks.back(), i + 1, kBytes);
  }
  for (int i = 0; i < 40; ++i) {
    size_t wrong = 0;
    for (size_t j = 0; j < kBytes; ++j) wrong += blocks[i][j] != uint8_t(i + 1);
    ASSERT_EQ(wrong, 0u) << "block " << i;
  }
  for (int i : {3, 0, 39, 20}) {
    FreeHugePageBacked(blocks[i], kBytes);
    blocks[i] = nullptr;
  }
  uint8_t* last = static_cast<uint8_t*>(AllocateHugePageBacked(100));
  uint8_t* again = nullptr;
  FreeHugePageBacked(last, 100);
  again = static_cast<uint8_t*>(AllocateHugePageBacked(100));
  EXPECT_EQ(again, last);  // the slab's last block gave its room back
  FreeHugePageBacked(again, 100);
  for (uint8_t* b : blocks) FreeHugePageBacked(b, kBytes);
}

// As a vector's allocator: copies are deep, moves keep the block.
TEST(HugePageVector, CopiesAndMovesLikeAVector) {
  HugePageVector<int32_t> a((size_t(3) << 20) / 4);
  std::iota(a.begin(), a.end(), -5);
  HugePageVector<int32_t> b = a;
  ASSERT_EQ(b.size(), a.size());
  EXPECT_NE(b.data(), a.data());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
  const int32_t* block = b.data();
  HugePageVector<int32_t> c = std::move(b);
  EXPECT_EQ(c.data(), block);
  EXPECT_EQ(c.back(), int32_t(a.size()) - 6);
  c.assign(10, 3);  // shrinks into the same block
  EXPECT_EQ(c.size(), 10u);
  EXPECT_EQ(c[9], 3);
}

}  // namespace
}  // namespace spikeserve
