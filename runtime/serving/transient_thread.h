// Runs work that uses OpenMP on a thread that exits when the work is done.
//
// Why: libgomp keeps a pool of worker threads for every thread that ran an
// OpenMP region, for as long as that thread lives. Loading a model on the
// main thread and then running it on the engine thread leaves two pools:
// more libgomp threads than cores, so libgomp throttles its spin-wait and
// every parallel region of a decode step (each oneDNN call) pays a futex
// wake-up of a sleeping worker. Measured on 2 cores, SmolLM2-135M, 2
// threads: 13.6 ms per served decode token instead of 7.7.
#ifndef SPIKESERVE_RUNTIME_SERVING_TRANSIENT_THREAD_H_
#define SPIKESERVE_RUNTIME_SERVING_TRANSIENT_THREAD_H_

#include <optional>
#include <thread>
#include <utility>

namespace spikeserve {

// Returns fn()'s result; fn runs on a new thread that is joined before the
// return, taking its OpenMP pool with it.
template <typename F>
auto RunOnTransientThread(F&& fn) -> decltype(fn()) {
  std::optional<decltype(fn())> result;
  std::thread t([&] { result.emplace(fn()); });
  t.join();
  return *std::move(result);
}

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_SERVING_TRANSIENT_THREAD_H_
