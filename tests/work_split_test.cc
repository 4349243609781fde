#include "runtime/linear/work_split.h"

#include <omp.h>

#include <atomic>
#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace spikeserve {
namespace {

struct Case {
  int units, threads, grain, team;  // team: threads that call Work
};

// Every unit is run exactly once, whatever the number of units, shares,
// claim size and the team that turns up (smaller than the shares: the
// missing threads' shares are taken too; larger: the extra threads only
// take from the others).
TEST(WorkSplit, RunsEveryUnitOnce) {
  const Case cases[] = {
      {0, 2, 1, 2},    {1, 2, 1, 2},      {7, 2, 1, 2},     {7, 8, 3, 2},
      {1000, 1, 4, 1}, {1000, 2, 1, 2},   {1000, 2, 64, 2}, {1000, 3, 5, 1},
      {1000, 4, 7, 2}, {999, 2, 1000, 2}, {5000, 2, 1, 3},
  };
  for (const Case& c : cases) {
    std::unique_ptr<std::atomic<int>[]> runs(new std::atomic<int>[c.units]);
    for (int u = 0; u < c.units; ++u) runs[u] = 0;
    std::atomic<bool> bad_range{false};
    WorkSplit split(c.units, c.threads, c.grain);
#pragma omp parallel num_threads(c.team)
    split.Work(omp_get_thread_num(), [&](int b, int e) {
      if (!(0 <= b && b < e && e <= c.units && e - b <= c.grain)) {
        bad_range = true;
        return;
      }
      for (int u = b; u < e; ++u) runs[u].fetch_add(1);
    });
    EXPECT_FALSE(bad_range) << c.units << " units, grain " << c.grain;
    int wrong = 0;
    for (int u = 0; u < c.units; ++u) wrong += runs[u] != 1;
    EXPECT_EQ(wrong, 0) << c.units << " units over " << c.threads
                        << " shares, grain " << c.grain << ", team " << c.team;
  }
}

// A thread alone (the others never come) runs its share from the front,
// then the others' from their backs: the first claims are its own share
// in order.
TEST(WorkSplit, OwnShareFirstInOrderThenOthersFromTheBack) {
  WorkSplit split(10, 2, 2);
  std::vector<std::pair<int, int>> claims;
  split.Work(0, [&](int b, int e) { claims.push_back({b, e}); });
  const std::vector<std::pair<int, int>> want = {{0, 2},  {2, 4}, {4, 5},
                                                 {8, 10}, {6, 8}, {5, 6}};
  EXPECT_EQ(claims, want);
}

// Reset starts a used split over on another loop, to more shares too.
TEST(WorkSplit, ResetStartsOver) {
  WorkSplit split(4, 1, 1);
  int runs = 0;
  split.Work(0, [&](int b, int e) { runs += e - b; });
  EXPECT_EQ(runs, 4);
  split.Reset(30, 3, 4);
  std::vector<int> seen(30, 0);
  split.Work(1, [&](int b, int e) {
    for (int u = b; u < e; ++u) ++seen[u];
  });
  EXPECT_EQ(seen, std::vector<int>(30, 1));
  split.Reset(0, 2, 1);
  split.Work(0, [&](int, int) { ADD_FAILURE() << "no units"; });
}

}  // namespace
}  // namespace spikeserve
