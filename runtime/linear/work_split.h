// A split of a loop's units over an OpenMP team in which no thread idles at
// the join while another still works: each thread starts on its contiguous
// share (one sequential weight stream, as a static schedule gives), and a
// thread whose share is done takes units from the back of the share with
// the most left.
//
// Why: a decode step's matmuls are memory-bound, and two threads streaming
// equal shares do not finish together (one starts later, the other's
// stream is slower for a while; in model_team.cc one has read its first
// units ahead, and finishes its share first). With a static split, Ice
// Lake's two threads each waited at the joins 6-9% of a SmolLM2-135M
// decode step (perf), 2.5% with this split.
//
// Which thread runs a unit never changes what the unit computes, so
// results do not depend on the split.
#ifndef SPIKESERVE_RUNTIME_LINEAR_WORK_SPLIT_H_
#define SPIKESERVE_RUNTIME_LINEAR_WORK_SPLIT_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

namespace spikeserve {

class WorkSplit {
 public:
  // Units [0, units) over `threads` shares; claims of `grain` units.
  WorkSplit(int units, int threads, int grain) { Reset(units, threads, grain); }

  // Starts over on another loop (no thread may be in Work).
  void Reset(int units, int threads, int grain) {
    threads_ = std::max(1, threads);
    grain_ = uint32_t(std::max(1, grain));
    if (threads_ > capacity_) {
      shares_.reset(new Share[threads_]);
      capacity_ = threads_;
    }
    for (int t = 0; t < threads_; ++t) {
      const uint32_t begin = uint32_t(int64_t(units) * t / threads_);
      const uint32_t end = uint32_t(int64_t(units) * (t + 1) / threads_);
      shares_[t].range.store(Pack(begin, end), std::memory_order_relaxed);
    }
  }

  // From inside the parallel region, thread t of the team: calls
  // run(begin, end) on ranges of units until none is left anywhere. A team
  // smaller than `threads` still runs every unit (the missing threads'
  // shares are taken from).
  template <typename Run>
  void Work(int t, const Run& run) {
    if (t < threads_) {
      uint32_t b, e;
      while (TakeFront(t, &b, &e)) run(int(b), int(e));
    }
    for (;;) {
      // The share with the most units left, then a grain from its back.
      int victim = -1;
      uint32_t most = 0;
      for (int v = 0; v < threads_; ++v) {
        const uint64_t r = shares_[v].range.load(std::memory_order_relaxed);
        const uint32_t left = End(r) - Begin(r);  // begin <= end always
        if (left > most) most = left, victim = v;
      }
      if (victim < 0) return;
      uint32_t b, e;
      if (TakeBack(victim, &b, &e)) run(int(b), int(e));
    }
  }

 private:
  // [begin, end) of a share's units not yet taken, in one word so that its
  // owner (from the front) and a thief (from the back) never both take a
  // unit.
  struct alignas(64) Share {
    std::atomic<uint64_t> range{0};
  };
  static uint64_t Pack(uint32_t begin, uint32_t end) {
    return uint64_t(end) << 32 | begin;
  }
  static uint32_t Begin(uint64_t r) { return uint32_t(r); }
  static uint32_t End(uint64_t r) { return uint32_t(r >> 32); }

  bool TakeFront(int v, uint32_t* b, uint32_t* e) {
    uint64_t r = shares_[v].range.load(std::memory_order_relaxed);
    for (;;) {
      if (Begin(r) >= End(r)) return false;
      const uint32_t n = std::min<uint32_t>(grain_, End(r) - Begin(r));
      if (shares_[v].range.compare_exchange_weak(r, Pack(Begin(r) + n, End(r)),
                                                 std::memory_order_relaxed)) {
        *b = Begin(r);
        *e = Begin(r) + n;
        return true;
      }
    }
  }
  bool TakeBack(int v, uint32_t* b, uint32_t* e) {
    uint64_t r = shares_[v].range.load(std::memory_order_relaxed);
    for (;;) {
      if (Begin(r) >= End(r)) return false;
      const uint32_t n = std::min<uint32_t>(grain_, End(r) - Begin(r));
      if (shares_[v].range.compare_exchange_weak(r, Pack(Begin(r), End(r) - n),
                                                 std::memory_order_relaxed)) {
        *b = End(r) - n;
        *e = End(r);
        return true;
      }
    }
  }

  int threads_ = 0, capacity_ = 0;
  uint32_t grain_ = 1;
  std::unique_ptr<Share[]> shares_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_WORK_SPLIT_H_
