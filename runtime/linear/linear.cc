#include "runtime/linear/linear.h"

#include "dnnl.hpp"

namespace spikeserve {

void SgemmXWt(const float* x, int m, const Matrix& w, float* y) {
  // Row-major C[m][N] = A[m][K] · Bᵀ with B = W [N][K]: transb = 'T'.
  const dnnl_dim_t n = w.rows, k = w.cols;
  dnnl::sgemm('N', 'T', m, n, k, 1.0f, x, k, w.data.data(), k, 0.0f, y, n);
}

void Fp32Linear::Forward(const LinearInput& in, float* y) const {
  SgemmXWt(in.x, in.m, *w_, y);
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
