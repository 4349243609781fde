// Where the model's weights come from, as WeightRows (linear/weight_rows.h):
// GGUF tensors read in place from the mapping, several stacked into one
// site (q, k, v; gate, up), and the model's exact weight transforms
// (SmoothQuant scales, Hadamard rotations) applied row by row as the rows
// are read, so no transformed FP32 copy of the model is ever made.
#ifndef SPIKESERVE_RUNTIME_MODEL_SITE_ROWS_H_
#define SPIKESERVE_RUNTIME_MODEL_SITE_ROWS_H_

#include <memory>
#include <vector>

#include "runtime/gguf/gguf_reader.h"
#include "runtime/gguf/tensor_view.h"
#include "runtime/linear/hadamard.h"
#include "runtime/linear/weight_rows.h"

namespace spikeserve {

// A GGUF tensor's rows, dequantized on demand: in the mapping of `file`,
// which gets the pages back on Done, or (Copy) in bytes of its own, which
// outlive the file.
class TensorRows final : public WeightRows {
 public:
  TensorRows(TensorView view, const GgufFile* file)
      : view_(std::move(view)), file_(file) {}
  static std::unique_ptr<TensorRows> Copy(const TensorView& view);
  int rows() const override { return view_.rows; }
  int cols() const override { return view_.cols; }
  void Row(int r, float* out) const override { view_.DequantizeRow(r, out); }
  void Done(int r0, int r1) const override;
  size_t resident_bytes() const override { return owned_.size(); }
  std::optional<FourBitLayout> four_bit() const override;
  void FourBitRow(int r, uint8_t* u, uint16_t* scale,
                  uint16_t* min) const override;

 private:
  TensorView view_;
  const GgufFile* file_;
  std::vector<uint8_t> owned_;  // Copy only
};

// Sources stacked vertically; all have the same number of columns.
class StackedRows final : public WeightRows {
 public:
  explicit StackedRows(std::vector<std::unique_ptr<WeightRows>> parts);
  int rows() const override { return rows_; }
  int cols() const override { return parts_[0]->cols(); }
  void Row(int r, float* out) const override;
  void Done(int r0, int r1) const override;
  // The parts' layout when they all share one.
  std::optional<FourBitLayout> four_bit() const override;
  void FourBitRow(int r, uint8_t* u, uint16_t* scale,
                  uint16_t* min) const override;

 private:
  // The part holding row r, and r within it.
  std::pair<const WeightRows*, int> PartOf(int r) const;

  std::vector<std::unique_ptr<WeightRows>> parts_;
  std::vector<int> first_;  // first row of each part
  int rows_ = 0;
};

// The exact transforms of method.md §6-7, in the order the old whole-model
// path applied them, so the served weights keep their bits:
//   w[r][j] *= col_scale[j]                  (SmoothQuant s of this site)
//   w[r][j] /= row_divisor[r - divide_from]  (rows from divide_from on: the
//                                             up rows when down is smoothed)
//   w[r] = rotate(w[r])                      (Hadamard over blocks of the
//                                             row: down_proj, INT8 lm_head)
struct RowTransform {
  std::vector<float> col_scale;  // [cols] or empty
  int divide_from = 0;
  std::vector<float> row_divisor;               // [rows - divide_from] or empty
  const HadamardTransform* rotation = nullptr;  // not owned
  bool empty() const {
    return col_scale.empty() && row_divisor.empty() && rotation == nullptr;
  }
};

class TransformedRows final : public WeightRows {
 public:
  TransformedRows(const WeightRows* source, RowTransform t)
      : src_(source), t_(std::move(t)) {}
  int rows() const override { return src_->rows(); }
  int cols() const override { return src_->cols(); }
  void Row(int r, float* out) const override;
  void Done(int r0, int r1) const override { src_->Done(r0, r1); }

 private:
  const WeightRows* src_;  // not owned
  RowTransform t_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_SITE_ROWS_H_
