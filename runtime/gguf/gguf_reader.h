// Reader for GGUF model files (versions 2 and 3): typed metadata and tensor
// views over a read-only memory mapping.
//
// Every count, length, offset and size is checked against the file before it
// is used, so a truncated or hostile file yields an absl::Status naming the
// field or tensor, never a crash or an unbounded allocation.
#ifndef SPIKESERVE_RUNTIME_GGUF_GGUF_READER_H_
#define SPIKESERVE_RUNTIME_GGUF_GGUF_READER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace spikeserve {

// GGUF metadata value types, as stored in the file.
enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

const char* GgufValueTypeName(GgufValueType type);

// One metadata value. Scalars are widened on parse (integers to int64 or
// uint64, floats to double); strings and array elements are views into the
// mapping, valid while the GgufFile lives.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  // Scalars.
  int64_t i64 = 0;   // signed integer types and bool
  uint64_t u64 = 0;  // unsigned integer types
  double f64 = 0;    // float types
  absl::string_view str;
  // Arrays: element type, count, and where the elements start. String
  // elements are pre-split into `strings` because they are variable-sized.
  GgufValueType elem_type = GgufValueType::kUint8;
  uint64_t count = 0;
  const uint8_t* elems = nullptr;
  std::vector<absl::string_view> strings;
};

// One tensor as described by the file. Dimensions are in ggml order:
// dims[0] is the innermost (contiguous) one, so a GGUF weight of an
// nn.Linear(in, out) has dims {in, out} and is stored row-major [out][in].
struct GgufTensor {
  std::string name;
  uint32_t type = 0;  // ggml type id (see ggml_type.h)
  std::vector<uint64_t> dims;
  uint64_t num_elements = 0;
  uint64_t num_bytes = 0;
  uint64_t offset = 0;            // from the start of the data section
  const uint8_t* data = nullptr;  // into the mapping; num_bytes long
};

// An open, parsed GGUF file. Immutable after Open; safe for concurrent reads.
class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(
      const std::string& path);
  // Parses an in-memory image (not copied: `data` must outlive the result).
  static absl::StatusOr<std::unique_ptr<GgufFile>> FromBuffer(
      const uint8_t* data, size_t size);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }

  bool Has(absl::string_view key) const;
  const GgufValue* Find(absl::string_view key) const;

  // Typed getters. Integer getters accept any integer type whose value fits
  // the requested range; float getters accept float32/64 and integers. A
  // missing key is NotFound, a wrong type or range InvalidArgument; both
  // messages name the key.
  absl::StatusOr<uint64_t> GetUint(absl::string_view key) const;
  absl::StatusOr<uint32_t> GetUint32(absl::string_view key) const;
  absl::StatusOr<double> GetFloat(absl::string_view key) const;
  absl::StatusOr<bool> GetBool(absl::string_view key) const;
  absl::StatusOr<std::string> GetString(absl::string_view key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(
      absl::string_view key) const;
  absl::StatusOr<std::vector<int32_t>> GetInt32Array(
      absl::string_view key) const;
  absl::StatusOr<std::vector<float>> GetFloat32Array(
      absl::string_view key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  // nullptr when absent.
  const GgufTensor* FindTensor(absl::string_view name) const;
  // NotFound naming the tensor when absent.
  absl::StatusOr<const GgufTensor*> GetTensor(absl::string_view name) const;

  // Gives the mapped pages of [p, p + n) back (madvise DONTNEED): a model
  // read tensor by tensor does not stay resident in this process (the pages
  // stay in the page cache; a later read maps them again). No-op for
  // in-memory images.
  void ReleasePages(const uint8_t* p, size_t n) const;

  const std::map<std::string, GgufValue, std::less<>>& metadata() const {
    return metadata_;
  }

 private:
  GgufFile() = default;
  absl::Status Parse();

  // The mapping (or caller's buffer).
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* mmap_addr_ = nullptr;  // non-null when we own an mmap

  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_GGUF_GGUF_READER_H_
