#include "runtime/model/site_rows.h"

#include <algorithm>

namespace spikeserve {

std::unique_ptr<TensorRows> TensorRows::Copy(const TensorView& view) {
  auto rows = std::make_unique<TensorRows>(view, nullptr);
  rows->owned_.assign(view.data, view.data + view.bytes());
  rows->view_.data = rows->owned_.data();
  return rows;
}

void TensorRows::Done(int r0, int r1) const {
  if (file_ != nullptr && r1 > r0) {
    file_->ReleasePages(view_.row(r0), size_t(r1 - r0) * view_.row_bytes);
  }
}

StackedRows::StackedRows(std::vector<std::unique_ptr<WeightRows>> parts)
    : parts_(std::move(parts)) {
  for (const auto& p : parts_) {
    first_.push_back(rows_);
    rows_ += p->rows();
  }
}

void StackedRows::Row(int r, float* out) const {
  const size_t i =
      std::upper_bound(first_.begin(), first_.end(), r) - first_.begin() - 1;
  parts_[i]->Row(r - first_[i], out);
}

void StackedRows::Done(int r0, int r1) const {
  for (size_t i = 0; i < parts_.size(); ++i) {
    const int a = std::max(r0, first_[i]);
    const int b = std::min(r1, first_[i] + parts_[i]->rows());
    if (a < b) parts_[i]->Done(a - first_[i], b - first_[i]);
  }
}

void TransformedRows::Row(int r, float* out) const {
  src_->Row(r, out);
  const int k = src_->cols();
  if (!t_.col_scale.empty()) {
    for (int j = 0; j < k; ++j) out[j] *= t_.col_scale[j];
  }
  if (!t_.row_divisor.empty() && r >= t_.divide_from) {
    const float d = t_.row_divisor[r - t_.divide_from];
    for (int j = 0; j < k; ++j) out[j] /= d;
  }
  if (t_.rotation != nullptr) t_.rotation->Apply(out, k / t_.rotation->size());
}

}  // namespace spikeserve
