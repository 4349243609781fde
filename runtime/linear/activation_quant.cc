#include "runtime/linear/activation_quant.h"

#include <algorithm>
#include <cmath>

#include "runtime/linear/parallel_rows.h"

namespace spikeserve {
namespace {
// Row loops fork OpenMP threads only for batches this large (prefill);
// for decode-sized batches fork/join costs more than it saves.
constexpr int kParallelRows = 32;
}  // namespace

void QuantizeActivations(const LinearInput& in, int k, ActQuantMode mode,
                         float static_absmax, float* row_scale, int8_t* xq) {
  const int m = in.m;
  auto absmax = [&](int r) {
    return in.row_absmax ? in.row_absmax[r] : AbsMax(in.x + size_t(r) * k, k);
  };
  switch (mode) {
    case ActQuantMode::kPerTokenDynamic:
      for (int r = 0; r < m; ++r) row_scale[r] = ScaleFor(absmax(r));
      break;
    case ActQuantMode::kPerTensorDynamic:
      for (size_t g = 0; g + 1 < in.seq_bounds.size(); ++g) {
        float mx = 0;
        for (int r = in.seq_bounds[g]; r < in.seq_bounds[g + 1]; ++r) {
          const float a = absmax(r);
          if (!(a <= mx) && !std::isnan(mx)) mx = a;  // larger, or a NaN
        }
        for (int r = in.seq_bounds[g]; r < in.seq_bounds[g + 1]; ++r) {
          row_scale[r] = ScaleFor(mx);
        }
      }
      break;
    case ActQuantMode::kPerTensorStatic:
      // A row with a NaN gets a NaN scale, as in the dynamic modes: the
      // fixed range would quantize the NaN into a finite code.
      for (int r = 0; r < m; ++r) {
        const float a = absmax(r);
        row_scale[r] = std::isnan(a) ? a : ScaleFor(static_absmax);
      }
      break;
  }
  ParallelRows(m, m >= kParallelRows, [&](int r) {
    QuantizeRow(in.x + size_t(r) * k, k, 1.0f / row_scale[r],
                &xq[size_t(r) * k]);
  });
}

}  // namespace spikeserve
