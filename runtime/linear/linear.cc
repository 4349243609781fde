#include "runtime/linear/linear.h"

#include <algorithm>
#include <vector>

#include "runtime/linear/fixed_order_gemm.h"

namespace spikeserve {

void Fp32Linear::Forward(const LinearInput& in, float* y) const {
  FixedOrderGemm(in.x, in.m, w_->data.data(), w_->rows, w_->cols, y);
}

void StreamedFp32Linear::Forward(const LinearInput& in, float* y) const {
  // Blocks of output rows small enough to stay in L2 while they are read.
  const int n = w_->rows(), k = w_->cols();
  const int block = 64;
  thread_local std::vector<float> rows;
  if (rows.size() < size_t(block) * k) rows.resize(size_t(block) * k);
  float* buf = rows.data();  // thread_local: OpenMP workers have their own
  for (int r0 = 0; r0 < n; r0 += block) {
    const int nb = std::min<int>(block, n - r0);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < nb; ++r) w_->Row(r0 + r, buf + size_t(r) * k);
    // y[m][r0 .. r0+nb), rows N apart.
    FixedOrderGemmStrided(in.x, in.m, buf, nb, k, y + r0, n);
    w_->Done(r0, r0 + nb);
  }
}

void ReferenceLinear(const float* x, int m, const Matrix& w, float* y) {
  for (int i = 0; i < m; ++i) {
    for (int n = 0; n < w.rows; ++n) {
      double acc = 0;
      const float* wr = w.row(n);
      for (int k = 0; k < w.cols; ++k) {
        acc += double(x[size_t(i) * w.cols + k]) * wr[k];
      }
      y[size_t(i) * w.rows + n] = float(acc);
    }
  }
}

}  // namespace spikeserve
