#include "runtime/linear/huge_pages.h"

#include <cstdint>
#include <cstring>
#include <numeric>

#include "gtest/gtest.h"

namespace spikeserve {
namespace {

struct Case {
  size_t bytes;
  bool aligned_2m;  // blocks of 2 MiB or more start on a 2 MiB boundary
};

class HugePagesTest : public ::testing::TestWithParam<Case> {};

// Every byte is ours to write and read back, and large blocks are aligned
// for huge pages; small ones come from malloc.
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
