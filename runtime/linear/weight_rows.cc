#include "runtime/linear/weight_rows.h"

#include <cstring>

namespace spikeserve {

void MatrixRows::Row(int r, float* out) const {
  std::memcpy(out, m_.row(r), sizeof(float) * size_t(m_.cols));
}

Matrix ToMatrix(const WeightRows& w) {
  Matrix m;
  m.rows = w.rows();
  m.cols = w.cols();
  m.data.resize(size_t(m.rows) * m.cols);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < m.rows; ++r) {
    w.Row(r, m.data.data() + size_t(r) * m.cols);
  }
  w.Done(0, m.rows);
  return m;
}

}  // namespace spikeserve
