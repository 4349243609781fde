#include "runtime/gguf/gguf_writer.h"

#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/gguf/ggml_type.h"

namespace spikeserve {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF", little-endian
constexpr uint32_t kVersion = 3;
constexpr uint64_t kAlignment = 32;  // GGUF's default (general.alignment)
constexpr uint32_t kTypeU32 = 4, kTypeString = 8;

template <typename T>
void Put(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out->append(b, sizeof(T));
}
void PutString(std::string* out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out->append(s);
}
void Pad(std::string* out) {
  out->append((kAlignment - out->size() % kAlignment) % kAlignment, '\0');
}

}  // namespace

void GgufWriter::SetString(const std::string& key, const std::string& value) {
  std::string v;
  PutString(&v, value);
  kvs_.push_back({key, kTypeString, std::move(v)});
}

void GgufWriter::SetUint32(const std::string& key, uint32_t value) {
  std::string v;
  Put<uint32_t>(&v, value);
  kvs_.push_back({key, kTypeU32, std::move(v)});
}

void GgufWriter::AddTensor(const std::string& name, std::vector<uint64_t> dims,
                           uint32_t ggml_type, std::string data) {
  tensors_.push_back({name, std::move(dims), ggml_type, std::move(data)});
}

absl::Status GgufWriter::Write(const std::string& path) const {
  std::string head;
  Put<uint32_t>(&head, kMagic);
  Put<uint32_t>(&head, kVersion);
  Put<uint64_t>(&head, tensors_.size());
  Put<uint64_t>(&head, kvs_.size());
  for (const Kv& kv : kvs_) {
    PutString(&head, kv.key);
    Put<uint32_t>(&head, kv.type);
    head.append(kv.value);
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    const GgmlTypeTraits* traits = GetGgmlTypeTraits(t.type);
    uint64_t elems = 1;
    for (uint64_t d : t.dims) elems *= d;
    if (traits == nullptr || t.dims.empty() ||
        t.dims[0] % traits->block_elems != 0 ||
        elems / traits->block_elems * traits->block_bytes != t.data.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF writer: tensor ", t.name, " has ", t.data.size(),
                       " bytes, not its shape's in ", GgmlTypeName(t.type)));
    }
    PutString(&head, t.name);
    Put<uint32_t>(&head, uint32_t(t.dims.size()));
    for (uint64_t d : t.dims) Put<uint64_t>(&head, d);
    Put<uint32_t>(&head, t.type);
    Put<uint64_t>(&head, offset);
    offset += (t.data.size() + kAlignment - 1) / kAlignment * kAlignment;
  }
  Pad(&head);
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("GGUF writer: cannot create ", tmp));
  }
  bool ok = std::fwrite(head.data(), 1, head.size(), f) == head.size();
  const std::string zeros(kAlignment, '\0');
  for (const Tensor& t : tensors_) {
    ok = ok && std::fwrite(t.data.data(), 1, t.data.size(), f) == t.data.size();
    const size_t pad = (kAlignment - t.data.size() % kAlignment) % kAlignment;
    ok = ok && std::fwrite(zeros.data(), 1, pad, f) == pad;
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::UnavailableError(
        absl::StrCat("GGUF writer: cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace spikeserve
