#include "runtime/gguf/gguf_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/gguf/ggml_type.h"

namespace spikeserve {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
// No real model has a dimension above 2^40 elements; rejecting larger ones
// early keeps every later product far from overflow.
constexpr uint64_t kMaxDim = uint64_t{1} << 40;

absl::Status Corrupt(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("gguf: ", what));
}

// Size in bytes of a fixed-size value type; 0 for string and array.
size_t ScalarSize(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

bool IsValidType(uint32_t t) { return t <= 12; }

// Bounds-checked little-endian cursor over the file image. Every read names
// what it reads so that truncation errors say where the file ended.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  const uint8_t* here() const { return data_ + pos_; }

  absl::Status Skip(uint64_t n, absl::string_view what) {
    if (n > remaining()) {
      return Corrupt(absl::StrCat("truncated file: ", what, " needs ", n,
                                  " bytes at offset ", pos_, ", only ",
                                  remaining(), " remain"));
    }
    pos_ += n;
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Read(T* out, absl::string_view what) {
    const size_t at = pos_;
    if (absl::Status s = Skip(sizeof(T), what); !s.ok()) return s;
    std::memcpy(out, data_ + at, sizeof(T));
    return absl::OkStatus();
  }

  absl::Status ReadString(absl::string_view* out, absl::string_view what) {
    uint64_t len = 0;
    if (absl::Status s = Read(&len, absl::StrCat(what, " length")); !s.ok()) {
      return s;
    }
    const size_t at = pos_;
    if (absl::Status s = Skip(len, what); !s.ok()) return s;
    *out = absl::string_view(reinterpret_cast<const char*>(data_ + at), len);
    return absl::OkStatus();
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Reads one value of type `type` (arrays included) into `v`.
absl::Status ReadValue(Cursor& c, GgufValueType type, GgufValue* v,
                       const std::string& key) {
  v->type = type;
  const std::string what = absl::StrCat("value of metadata key '", key, "'");
  switch (type) {
    case GgufValueType::kUint8: {
      uint8_t x;
      if (auto s = c.Read(&x, what); !s.ok()) return s;
      v->u64 = x;
      return absl::OkStatus();
    }
    case GgufValueType::kInt8: {
      int8_t x;
      if (auto s = c.Read(&x, what); !s.ok()) return s;
      v->i64 = x;
      return absl::OkStatus();
    }
    case GgufValueType::kUint16: {
      uint16_t x;
      if (auto s = c.Read(&x, what); !s.ok()) return s;
      v->u64 = x;
      return absl::OkStatus();
    }
    case GgufValueType::kInt16: {
      int16_t x;
      if (auto s = c.Read(&x, what); !s.ok()) return s;
      v->i64 = x;
      return absl::OkStatus();
    }
    case GgufValueType::kUint32: {
      uint32_t x;
      if (auto s = c.Read(&x, what); !s.ok()) return s;
      v->u64 = x;
      return absl::OkStatus();
    }
    case GgufValueType::kInt32: {
      int32_t x;
      if (auto s = c.Read(&x, what); !s.ok()) return s;
      v->i64 = x;
      return absl::OkStatus();
    }
    case GgufValueType::kFloat32: {
      float x;
      if (auto s = c.Read(&x, what); !s.ok()) return s;
      v->f64 = x;
      return absl::OkStatus();
    }
    case GgufValueType::kBool: {
      uint8_t x;
      if (auto s = c.Read(&x, what); !s.ok()) return s;
      if (x > 1) {
        return Corrupt(
            absl::StrCat("metadata key '", key, "': bool value is ", int{x}));
      }
      v->i64 = x;
      return absl::OkStatus();
    }
    case GgufValueType::kUint64: {
      uint64_t x;
      if (auto s = c.Read(&x, what); !s.ok()) return s;
      v->u64 = x;
      return absl::OkStatus();
    }
    case GgufValueType::kInt64: {
      int64_t x;
      if (auto s = c.Read(&x, what); !s.ok()) return s;
      v->i64 = x;
      return absl::OkStatus();
    }
    case GgufValueType::kFloat64: {
      double x;
      if (auto s = c.Read(&x, what); !s.ok()) return s;
      v->f64 = x;
      return absl::OkStatus();
    }
    case GgufValueType::kString:
      return c.ReadString(&v->str, what);
    case GgufValueType::kArray: {
      uint32_t elem_type = 0;
      if (auto s = c.Read(&elem_type, absl::StrCat(what, " element type"));
          !s.ok()) {
        return s;
      }
      if (!IsValidType(elem_type)) {
        return Corrupt(absl::StrCat("metadata key '", key,
                                    "': unknown array element type ",
                                    elem_type));
      }
      v->elem_type = static_cast<GgufValueType>(elem_type);
      if (v->elem_type == GgufValueType::kArray) {
        return Corrupt(absl::StrCat("metadata key '", key,
                                    "': nested arrays are not supported"));
      }
      if (auto s = c.Read(&v->count, absl::StrCat(what, " element count"));
          !s.ok()) {
        return s;
      }
      v->elems = c.here();
      if (v->elem_type == GgufValueType::kString) {
        // Each string takes at least its 8-byte length: bound the count
        // before reserving.
        if (v->count > c.remaining() / 8) {
          return Corrupt(absl::StrCat("metadata key '", key, "': array of ",
                                      v->count, " strings exceeds the file"));
        }
        // Grown as strings parse: a resize to the bound (which counts the
        // rest of the file) zero-filled ~2x the file first.
        for (uint64_t i = 0; i < v->count; ++i) {
          if (auto s = c.ReadString(&v->strings.emplace_back(),
                                    absl::StrCat(what, " element ", i));
              !s.ok()) {
            return s;
          }
        }
        return absl::OkStatus();
      }
      const size_t elem_size = ScalarSize(v->elem_type);
      if (v->count > c.remaining() / elem_size) {
        return Corrupt(absl::StrCat("truncated file: metadata key '", key,
                                    "' array of ", v->count, " elements of ",
                                    GgufValueTypeName(v->elem_type),
                                    " exceeds the file"));
      }
      return c.Skip(v->count * elem_size, what);
    }
  }
  return Corrupt(absl::StrCat("metadata key '", key, "': unknown value type ",
                              static_cast<uint32_t>(type)));
}

absl::Status WrongType(absl::string_view key, const GgufValue& v,
                       absl::string_view expected) {
  std::string got = GgufValueTypeName(v.type);
  if (v.type == GgufValueType::kArray) {
    got = absl::StrCat("ARRAY of ", GgufValueTypeName(v.elem_type));
  }
  return absl::InvalidArgumentError(absl::StrCat("gguf: metadata key '", key,
                                                 "' has type ", got,
                                                 ", expected ", expected));
}

bool IsUnsigned(GgufValueType t) {
  return t == GgufValueType::kUint8 || t == GgufValueType::kUint16 ||
         t == GgufValueType::kUint32 || t == GgufValueType::kUint64;
}
bool IsSigned(GgufValueType t) {
  return t == GgufValueType::kInt8 || t == GgufValueType::kInt16 ||
         t == GgufValueType::kInt32 || t == GgufValueType::kInt64;
}

// Reads element i of a fixed-size array as an int64 (integer arrays only).
int64_t ArrayIntAt(const GgufValue& v, uint64_t i) {
  const uint8_t* p = v.elems + i * ScalarSize(v.elem_type);
  switch (v.elem_type) {
    case GgufValueType::kUint8:
      return *p;
    case GgufValueType::kInt8:
      return static_cast<int8_t>(*p);
    case GgufValueType::kUint16: {
      uint16_t x;
      std::memcpy(&x, p, 2);
      return x;
    }
    case GgufValueType::kInt16: {
      int16_t x;
      std::memcpy(&x, p, 2);
      return x;
    }
    case GgufValueType::kUint32: {
      uint32_t x;
      std::memcpy(&x, p, 4);
      return x;
    }
    case GgufValueType::kInt32: {
      int32_t x;
      std::memcpy(&x, p, 4);
      return x;
    }
    case GgufValueType::kUint64: {
      uint64_t x;
      std::memcpy(&x, p, 8);
      return static_cast<int64_t>(x);
    }
    case GgufValueType::kInt64: {
      int64_t x;
      std::memcpy(&x, p, 8);
      return x;
    }
    default:
      return 0;
  }
}

}  // namespace

const char* GgufValueTypeName(GgufValueType type) {
  static constexpr const char* kNames[] = {
      "UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
      "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};
  const auto i = static_cast<uint32_t>(type);
  return i < 13 ? kNames[i] : "UNKNOWN";
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(
    const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string msg =
        absl::StrCat("cannot open model file '", path, "': ", strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg)
                         : absl::PermissionDeniedError(msg);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("model path '", path, "' is not a regular file"));
  }
  auto file = std::unique_ptr<GgufFile>(new GgufFile());
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* addr = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return absl::InternalError(
          absl::StrCat("cannot mmap '", path, "': ", strerror(err)));
    }
    file->mmap_addr_ = addr;
    file->data_ = static_cast<const uint8_t*>(addr);
  }
  ::close(fd);
  if (absl::Status s = file->Parse(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), " (", path, ")"));
  }
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::FromBuffer(
    const uint8_t* data, size_t size) {
  auto file = std::unique_ptr<GgufFile>(new GgufFile());
  file->data_ = data;
  file->size_ = size;
  if (absl::Status s = file->Parse(); !s.ok()) return s;
  return file;
}

GgufFile::~GgufFile() {
  if (mmap_addr_ != nullptr) ::munmap(mmap_addr_, size_);
}

absl::Status GgufFile::Parse() {
  Cursor c(data_, size_);
  uint32_t magic = 0;
  if (auto s = c.Read(&magic, "magic"); !s.ok()) return s;
  if (magic != kMagic) {
    return Corrupt(absl::StrCat("bad magic 0x",
                                absl::Hex(magic, absl::kZeroPad8),
                                ": not a GGUF file"));
  }
  if (auto s = c.Read(&version_, "version"); !s.ok()) return s;
  if (version_ != 2 && version_ != 3) {
    return absl::UnimplementedError(absl::StrCat(
        "gguf: unsupported version ", version_,
        version_ == 1 ? " (GGUF v1 predates 64-bit counts; re-convert it)"
                      : (version_ > 0xFFFF ? " (big-endian file?)" : ""),
        "; supported: 2, 3"));
  }
  uint64_t tensor_count = 0, kv_count = 0;
  if (auto s = c.Read(&tensor_count, "tensor count"); !s.ok()) return s;
  if (auto s = c.Read(&kv_count, "metadata count"); !s.ok()) return s;
  // Each metadata entry takes >= 12 bytes (key length + type); each tensor
  // info >= 24 (name length + n_dims + type + offset).
  if (kv_count > c.remaining() / 12) {
    return Corrupt(
        absl::StrCat("metadata count ", kv_count, " cannot fit in the file"));
  }
  for (uint64_t i = 0; i < kv_count; ++i) {
    absl::string_view key;
    if (auto s = c.ReadString(&key, absl::StrCat("key of metadata entry ", i));
        !s.ok()) {
      return s;
    }
    uint32_t type = 0;
    const std::string key_str(key);
    if (auto s =
            c.Read(&type, absl::StrCat("type of metadata key '", key_str, "'"));
        !s.ok()) {
      return s;
    }
    if (!IsValidType(type)) {
      return Corrupt(absl::StrCat("metadata key '", key_str,
                                  "' has unknown value type ", type));
    }
    GgufValue value;
    if (auto s =
            ReadValue(c, static_cast<GgufValueType>(type), &value, key_str);
        !s.ok()) {
      return s;
    }
    if (!metadata_.emplace(key_str, std::move(value)).second) {
      return Corrupt(absl::StrCat("duplicate metadata key '", key_str, "'"));
    }
  }

  if (const GgufValue* a = Find("general.alignment"); a != nullptr) {
    if (a->type != GgufValueType::kUint32 || a->u64 == 0 ||
        (a->u64 & (a->u64 - 1)) != 0) {
      return Corrupt("general.alignment must be a UINT32 power of two");
    }
    alignment_ = a->u64;
  }

  if (tensor_count > c.remaining() / 24) {
    return Corrupt(
        absl::StrCat("tensor count ", tensor_count, " cannot fit in the file"));
  }
  // Grown as entries parse: the bound above counts the tensor data too, so
  // a count near it made a resize build ~4x the file in empty entries
  // before the first one was read.
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensor& t = tensors_.emplace_back();
    absl::string_view name;
    if (auto s = c.ReadString(&name, absl::StrCat("name of tensor ", i));
        !s.ok()) {
      return s;
    }
    t.name = std::string(name);
    const std::string where = absl::StrCat("tensor '", t.name, "'");
    uint32_t n_dims = 0;
    if (auto s = c.Read(&n_dims, where + " dimension count"); !s.ok()) return s;
    if (n_dims == 0 || n_dims > kMaxDims) {
      return Corrupt(absl::StrCat(where, " has ", n_dims,
                                  " dimensions; allowed 1..", kMaxDims));
    }
    t.dims.resize(n_dims);
    t.num_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      if (auto s = c.Read(&t.dims[d], absl::StrCat(where, " dimension ", d));
          !s.ok()) {
        return s;
      }
      if (t.dims[d] == 0 || t.dims[d] > kMaxDim) {
        return Corrupt(absl::StrCat(where, " dimension ", d, " is ", t.dims[d],
                                    "; allowed 1..", kMaxDim));
      }
      // Overflow check of the element count (stays below 2^63).
      if (t.num_elements > (uint64_t{1} << 62) / t.dims[d]) {
        return Corrupt(absl::StrCat(where, " dimensions [",
                                    absl::StrJoin(t.dims, ", "),
                                    "] overflow the element count"));
      }
      t.num_elements *= t.dims[d];
    }
    if (auto s = c.Read(&t.type, where + " type"); !s.ok()) return s;
    const GgmlTypeTraits* traits = GetGgmlTypeTraits(t.type);
    if (traits == nullptr) {
      return Corrupt(absl::StrCat(where, " has unknown ggml type id ", t.type));
    }
    if (t.dims[0] % traits->block_elems != 0) {
      return Corrupt(absl::StrCat(
          where, " of type ", traits->name, ": innermost dimension ", t.dims[0],
          " is not a multiple of the block size ", traits->block_elems));
    }
    // 2^62 elements of 8 bytes wrapped to 0 bytes, which fit any file.
    const uint64_t blocks = t.num_elements / traits->block_elems;
    if (blocks > (uint64_t{1} << 62) / traits->block_bytes) {
      return Corrupt(absl::StrCat(where, " of type ", traits->name, ": ",
                                  t.num_elements,
                                  " elements overflow the byte count"));
    }
    t.num_bytes = blocks * traits->block_bytes;
    if (auto s = c.Read(&t.offset, where + " data offset"); !s.ok()) return s;
    if (t.offset % alignment_ != 0) {
      return Corrupt(absl::StrCat(where, " data offset ", t.offset,
                                  " is not a multiple of the alignment ",
                                  alignment_));
    }
    if (!tensor_index_.emplace(t.name, i).second) {
      return Corrupt(absl::StrCat("duplicate tensor name '", t.name, "'"));
    }
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t data_start =
      (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  for (GgufTensor& t : tensors_) {
    const uint64_t rel = t.offset;
    if (data_start > size_ || rel > size_ - data_start ||
        t.num_bytes > size_ - data_start - rel) {
      return Corrupt(absl::StrCat(
          "tensor '", t.name, "' data [", data_start + rel, ", ",
          data_start + rel + t.num_bytes, ") lies beyond the end of the file (",
          size_, " bytes)"));
    }
    t.data = data_ + data_start + rel;
  }
  return absl::OkStatus();
}

bool GgufFile::Has(absl::string_view key) const {
  return metadata_.find(key) != metadata_.end();
}

const GgufValue* GgufFile::Find(absl::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

namespace {
absl::Status Missing(absl::string_view key) {
  return absl::NotFoundError(
      absl::StrCat("gguf: required metadata key '", key, "' is missing"));
}
}  // namespace

absl::StatusOr<uint64_t> GgufFile::GetUint(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (IsUnsigned(v->type)) return v->u64;
  if (IsSigned(v->type)) {
    if (v->i64 < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gguf: metadata key '", key, "' is negative (", v->i64, ")"));
    }
    return static_cast<uint64_t>(v->i64);
  }
  return WrongType(key, *v, "an unsigned integer");
}

absl::StatusOr<uint32_t> GgufFile::GetUint32(absl::string_view key) const {
  absl::StatusOr<uint64_t> v = GetUint(key);
  if (!v.ok()) return v.status();
  if (*v > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gguf: metadata key '", key, "' value ", *v, " exceeds 32 bits"));
  }
  return static_cast<uint32_t>(*v);
}

absl::StatusOr<double> GgufFile::GetFloat(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type == GgufValueType::kFloat32 ||
      v->type == GgufValueType::kFloat64) {
    if (!std::isfinite(v->f64)) {
      return absl::InvalidArgumentError(
          absl::StrCat("gguf: metadata key '", key, "' is not finite"));
    }
    return v->f64;
  }
  if (IsUnsigned(v->type)) return static_cast<double>(v->u64);
  if (IsSigned(v->type)) return static_cast<double>(v->i64);
  return WrongType(key, *v, "a number");
}

absl::StatusOr<bool> GgufFile::GetBool(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type != GgufValueType::kBool) return WrongType(key, *v, "BOOL");
  return v->i64 != 0;
}

absl::StatusOr<std::string> GgufFile::GetString(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type != GgufValueType::kString) return WrongType(key, *v, "STRING");
  return std::string(v->str);
}

absl::StatusOr<std::vector<std::string>> GgufFile::GetStringArray(
    absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type != GgufValueType::kArray ||
      v->elem_type != GgufValueType::kString) {
    return WrongType(key, *v, "ARRAY of STRING");
  }
  return std::vector<std::string>(v->strings.begin(), v->strings.end());
}

absl::StatusOr<std::vector<int32_t>> GgufFile::GetInt32Array(
    absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type != GgufValueType::kArray ||
      !(IsSigned(v->elem_type) || IsUnsigned(v->elem_type))) {
    return WrongType(key, *v, "ARRAY of integers");
  }
  std::vector<int32_t> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) {
    const int64_t x = ArrayIntAt(*v, i);
    if (x < std::numeric_limits<int32_t>::min() ||
        x > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gguf: metadata key '", key, "' element ", i, " out of int32 range"));
    }
    out[i] = static_cast<int32_t>(x);
  }
  return out;
}

absl::StatusOr<std::vector<float>> GgufFile::GetFloat32Array(
    absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type != GgufValueType::kArray ||
      v->elem_type != GgufValueType::kFloat32) {
    return WrongType(key, *v, "ARRAY of FLOAT32");
  }
  std::vector<float> out(v->count);
  if (v->count > 0) std::memcpy(out.data(), v->elems, v->count * sizeof(float));
  return out;
}

const GgufTensor* GgufFile::FindTensor(absl::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<const GgufTensor*> GgufFile::GetTensor(
    absl::string_view name) const {
  const GgufTensor* t = FindTensor(name);
  if (t == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("gguf: required tensor '", name, "' is missing"));
  }
  return t;
}

void GgufFile::ReleasePages(const uint8_t* p, size_t n) const {
  if (mmap_addr_ == nullptr || n == 0) return;
  static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  // Rounded outwards: a neighbour's page dropped too is only read again
  // (the mapping is read-only and private, so nothing is lost).
  const uintptr_t begin = uintptr_t(p) & ~(page - 1);
  const uintptr_t end = (uintptr_t(p) + n + page - 1) & ~(page - 1);
  if (end <= begin) return;
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace spikeserve
