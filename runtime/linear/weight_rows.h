// The seam between where a weight lives and the kernels that serve it.
//
// A kernel's one serving copy is built from the weight's FP32 rows, produced
// on demand, one output row at a time: from a GGUF tensor in the mmap (its
// blocks dequantized, then the model's exact transforms applied), or from an
// FP32 matrix already in memory. So a load never holds more FP32 than a few
// rows of one tensor (an 8B model's weights are 32 GB as FP32).
#ifndef SPIKESERVE_RUNTIME_LINEAR_WEIGHT_ROWS_H_
#define SPIKESERVE_RUNTIME_LINEAR_WEIGHT_ROWS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace spikeserve {

// Row-major FP32 matrix [rows][cols]. For a linear layer y = x·Wᵀ,
// rows = output features and cols = input features (GGUF's own layout).
struct Matrix {
  int rows = 0;
  int cols = 0;
  std::vector<float> data;  // rows * cols

  const float* row(int r) const { return data.data() + size_t(r) * cols; }
};

// How a source stores 4-bit weights (w4_gemm.h's plain form): groups of
// `group` along a row, half scales, and half mins when has_min.
struct FourBitLayout {
  int group = 32;
  bool has_min = false;
};

// W [rows][cols] as FP32 rows on demand. Thread-safe: kernels convert rows
// in parallel.
class WeightRows {
 public:
  virtual ~WeightRows() = default;
  virtual int rows() const = 0;
  virtual int cols() const = 0;
  // out[cols] = W[r].
  virtual void Row(int r, float* out) const = 0;
  // Says that rows [r0, r1) will not be read again soon: a source in a file
  // mapping gives its pages back (they stay in the page cache), so reading
  // a model once does not leave it resident in this process.
  virtual void Done(int r0, int r1) const {}
  // Bytes this source holds in memory of its own (not in a file mapping).
  virtual size_t resident_bytes() const { return 0; }
  // When every row is stored as 4-bit groups (a GGUF Q4_0, Q4_1 or Q4_K
  // tensor, untransformed), their layout; then FourBitRow gives row r as
  // stored: u[cols], scale[cols / group] and, with mins, min[...].
  virtual std::optional<FourBitLayout> four_bit() const { return std::nullopt; }
  virtual void FourBitRow(int r, uint8_t* u, uint16_t* scale,
                          uint16_t* min) const {}
};

// A WeightRows over an FP32 matrix in memory (not owned).
class MatrixRows final : public WeightRows {
 public:
  explicit MatrixRows(const Matrix& m) : m_(m) {}
  int rows() const override { return m_.rows; }
  int cols() const override { return m_.cols; }
  void Row(int r, float* out) const override;
  size_t resident_bytes() const override {
    return m_.data.size() * sizeof(float);
  }

 private:
  const Matrix& m_;
};

// Materializes every row (an FP32 kernel's copy).
Matrix ToMatrix(const WeightRows& w);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_WEIGHT_ROWS_H_
