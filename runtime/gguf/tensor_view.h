// A non-owning view of one 2-D GGUF tensor in the file mapping: its ggml
// type and geometry, read row by row. Rows are ggml's dims[0] (the innermost,
// contiguous dimension), so every row is a whole number of blocks.
#ifndef SPIKESERVE_RUNTIME_GGUF_TENSOR_VIEW_H_
#define SPIKESERVE_RUNTIME_GGUF_TENSOR_VIEW_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_reader.h"

namespace spikeserve {

struct TensorView {
  std::string name;
  uint32_t type = 0;  // ggml type id
  int rows = 0;       // dims[1]
  int cols = 0;       // dims[0]
  size_t row_bytes = 0;
  const uint8_t* data = nullptr;  // rows * row_bytes

  size_t bytes() const { return size_t(rows) * row_bytes; }
  const uint8_t* row(int r) const { return data + size_t(r) * row_bytes; }
  // out[cols] = row r as FP32.
  void DequantizeRow(int r, float* out) const;
};

// The view of tensor `name`, which must be [cols, rows] in ggml order (a
// vector when rows is 1 and the tensor has one dimension) and of a type we
// can dequantize. Errors name the tensor and what is wrong.
absl::StatusOr<TensorView> ViewTensor(const GgufFile& file,
                                      const std::string& name, int rows,
                                      int cols);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_GGUF_TENSOR_VIEW_H_
