#include "runtime/model/site_rows.h"

#include <algorithm>

#include "runtime/gguf/four_bit.h"

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

std::optional<FourBitLayout> TensorRows::four_bit() const {
  return FourBitLayoutOf(view_.type);
}

void TensorRows::FourBitRow(int r, uint8_t* u, uint16_t* scale,
                            uint16_t* min) const {
  FourBitRowOf(view_.type, view_.row(r), view_.cols, u, scale, min);
}

std::pair<const WeightRows*, int> StackedRows::PartOf(int r) const {
  const size_t i =
      std::upper_bound(first_.begin(), first_.end(), r) - first_.begin() - 1;
  return {parts_[i].get(), r - first_[i]};
}

void StackedRows::Row(int r, float* out) const {
  const auto [part, row] = PartOf(r);
  part->Row(row, out);
}

std::optional<FourBitLayout> StackedRows::four_bit() const {
  std::optional<FourBitLayout> layout = parts_[0]->four_bit();
  for (const auto& p : parts_) {
    const std::optional<FourBitLayout> l = p->four_bit();
    if (!l || !layout || l->group != layout->group ||
        l->has_min != layout->has_min) {
      return std::nullopt;
    }
  }
  return layout;
}

void StackedRows::FourBitRow(int r, uint8_t* u, uint16_t* scale,
                             uint16_t* min) const {
  const auto [part, row] = PartOf(r);
  part->FourBitRow(row, u, scale, min);
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
