// Writes GGUF files (version 3) of string and integer metadata and tensors
// already encoded in a ggml type: the files spikeserve makes itself (a
// quant plan's GPTQ weights, w4_weights_file.h). The reader
// (gguf_reader.h) reads them back; the tests' fixtures write their models
// with an independent encoder (tests/fixtures/gguf_builder.h).
#ifndef SPIKESERVE_RUNTIME_GGUF_GGUF_WRITER_H_
#define SPIKESERVE_RUNTIME_GGUF_GGUF_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace spikeserve {

class GgufWriter {
 public:
  void SetString(const std::string& key, const std::string& value);
  void SetUint32(const std::string& key, uint32_t value);
  // dims in ggml order (innermost first); `data` encoded in `ggml_type`,
  // its size checked against the type's geometry when written.
  void AddTensor(const std::string& name, std::vector<uint64_t> dims,
                 uint32_t ggml_type, std::string data);
  // Writes the file (to `path`.tmp, then renamed: a reader never sees half
  // a file). Errors name the path, or the tensor whose data size is wrong.
  absl::Status Write(const std::string& path) const;

 private:
  struct Kv {
    std::string key;
    uint32_t type;
    std::string value;  // encoded
  };
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
    std::string data;
  };
  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_GGUF_GGUF_WRITER_H_
