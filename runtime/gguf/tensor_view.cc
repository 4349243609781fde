#include "runtime/gguf/tensor_view.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/gguf/dequantize.h"
#include "runtime/gguf/ggml_type.h"

namespace spikeserve {

void TensorView::DequantizeRow(int r, float* out) const {
  spikeserve::DequantizeRow(type, row(r), out, uint64_t(cols));
}

absl::StatusOr<TensorView> ViewTensor(const GgufFile& file,
                                      const std::string& name, int rows,
                                      int cols) {
  absl::StatusOr<const GgufTensor*> t = file.GetTensor(name);
  if (!t.ok()) return t.status();
  const std::vector<uint64_t> want =
      rows == 1 && (*t)->dims.size() == 1
          ? std::vector<uint64_t>{uint64_t(cols)}
          : std::vector<uint64_t>{uint64_t(cols), uint64_t(rows)};
  if ((*t)->dims != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' has shape [", absl::StrJoin((*t)->dims, ", "),
        "], expected [", absl::StrJoin(want, ", "), "]"));
  }
  if (!IsDequantizable((*t)->type)) {
    return DequantizeTensor(**t).status();  // names the tensor and type
  }
  TensorView v;
  v.name = name;
  v.type = (*t)->type;
  v.rows = rows;
  v.cols = cols;
  v.row_bytes = (*t)->num_bytes / uint64_t(rows);
  v.data = (*t)->data;
  return v;
}

}  // namespace spikeserve
