// ParallelRows: a loop over rows on the OpenMP team only when it pays.
//
// `#pragma omp parallel for if (false)` still enters libgomp, which sets up
// and tears down a team of one: ~1 us per loop on Zen 3, ~2 us when the
// caller is itself inside a parallel region, as thread 0 of a decode
// step's team region is (model_team.cc) while it runs the step's serial
// work. A SmolLM2-135M decode step passed ~10 such loops per layer
// (quantization, kernel rows, group sums, rotation, residual), ~0.6 ms of
// a 6.6 ms step. Below the threshold the loop here runs on the calling
// thread without touching OpenMP.
#ifndef SPIKESERVE_RUNTIME_LINEAR_PARALLEL_ROWS_H_
#define SPIKESERVE_RUNTIME_LINEAR_PARALLEL_ROWS_H_

#include <omp.h>

#include <cstdint>

namespace spikeserve {

// body(i) for i in [0, n): split statically over the team when `parallel`,
// else in order on this thread.
template <typename Body>
void ParallelRows(int n, bool parallel, const Body& body) {
  if (!parallel) {
    for (int i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) body(i);
}

// run(u0, u1) on each thread of the team for its contiguous share of
// [0, units) (as a static schedule gives; threads with an empty share are
// not called) when `parallel`, else run(0, units) on this thread.
template <typename Run>
void ParallelShares(int units, bool parallel, const Run& run) {
  if (!parallel) {
    if (units > 0) run(0, units);
    return;
  }
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int u0 = int(int64_t(units) * t / nt);
    const int u1 = int(int64_t(units) * (t + 1) / nt);
    if (u0 < u1) run(u0, u1);
  }
}

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_PARALLEL_ROWS_H_
