#include "runtime/quant/w4_weights_file.h"

#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/gguf/ggml_type.h"
#include "runtime/gguf/gguf_writer.h"

namespace spikeserve {
namespace {

constexpr char kHashKey[] = "spikeserve.w4_weights.model_hash";

std::string TensorName(const SiteKey& key, const char* part) {
  return absl::StrCat("blk.", key.layer, ".", SiteName(key.site), ".", part);
}

std::string Bytes(const void* p, size_t n) {
  return std::string(static_cast<const char*>(p), n);
}

}  // namespace

absl::Status WriteW4WeightsFile(const std::string& path,
                                const std::string& model_hash,
                                const std::map<SiteKey, W4Plain>& sites) {
  GgufWriter w;
  w.SetString("general.type", "spikeserve.w4_weights");
  w.SetString(kHashKey, model_hash);
  for (const auto& [key, p] : sites) {
    if (p.k % 2 != 0 || p.group <= 0 || p.k % p.group != 0 ||
        p.u.size() != size_t(p.n) * p.k ||
        p.scale.size() != size_t(p.n) * p.groups() ||
        (p.has_min && p.min.size() != p.scale.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("W4 weights of ", SiteKeyName(key),
                       ": codes and scales do not fill ", p.n, "x", p.k));
    }
    std::string codes(size_t(p.n) * p.k / 2, '\0');
    for (size_t i = 0; i < codes.size(); ++i) {
      codes[i] = char((p.u[2 * i] & 15) | (p.u[2 * i + 1] << 4));
    }
    const uint64_t rows = uint64_t(p.n), groups = uint64_t(p.groups());
    w.AddTensor(TensorName(key, "w4_codes"), {uint64_t(p.k) / 2, rows},
                uint32_t(GgmlType::kI8), std::move(codes));
    w.AddTensor(TensorName(key, "w4_scales"), {groups, rows},
                uint32_t(GgmlType::kF16),
                Bytes(p.scale.data(), p.scale.size() * 2));
    if (p.has_min) {
      w.AddTensor(TensorName(key, "w4_mins"), {groups, rows},
                  uint32_t(GgmlType::kF16),
                  Bytes(p.min.data(), p.min.size() * 2));
    }
  }
  return w.Write(path);
}

absl::StatusOr<W4Plain> W4WeightsMap::Get(const SiteKey& k) const {
  auto it = sites.find(k);
  if (it == sites.end()) {
    return absl::NotFoundError(
        absl::StrCat("no given W4 weights for site ", SiteKeyName(k)));
  }
  return it->second;
}

absl::StatusOr<std::shared_ptr<const W4WeightsFile>> W4WeightsFile::Open(
    const std::string& path, const std::string& model_hash) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  if (!f.ok()) {
    return absl::Status(
        f.status().code(),
        absl::StrCat("W4 weights file '", path, "': ", f.status().message()));
  }
  absl::StatusOr<std::string> hash = (*f)->GetString(kHashKey);
  if (!hash.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("W4 weights file '", path, "' is not one (",
                     hash.status().message(), ")"));
  }
  if (*hash != model_hash) {
    return absl::FailedPreconditionError(
        absl::StrCat("W4 weights file '", path, "' was made for the model ",
                     *hash, ", not for this model (", model_hash, ")"));
  }
  return std::shared_ptr<const W4WeightsFile>(
      new W4WeightsFile(*std::move(f), path));
}

bool W4WeightsFile::Has(const SiteKey& k) const {
  return file_->FindTensor(TensorName(k, "w4_codes")) != nullptr;
}

absl::StatusOr<W4Plain> W4WeightsFile::Get(const SiteKey& k) const {
  const GgufTensor* codes = file_->FindTensor(TensorName(k, "w4_codes"));
  const GgufTensor* scales = file_->FindTensor(TensorName(k, "w4_scales"));
  const GgufTensor* mins = file_->FindTensor(TensorName(k, "w4_mins"));
  const std::string where =
      absl::StrCat("W4 weights file '", path_, "', site ", SiteKeyName(k));
  if (codes == nullptr || scales == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(where, ": no w4_codes and w4_scales tensors"));
  }
  auto shape_error = [&](const GgufTensor* t) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": tensor ", t->name, " has type ",
                     GgmlTypeName(t->type), " or a shape that does not match"));
  };
  // K = 2 x dims[0] and N must be ints: a K that wrapped passed the group
  // check and the unpacking below wrote past its buffer.
  if (codes->type != uint32_t(GgmlType::kI8) || codes->dims.size() != 2 ||
      codes->dims[0] > uint64_t(INT_MAX / 2) ||
      codes->dims[1] > uint64_t(INT_MAX)) {
    return shape_error(codes);
  }
  W4Plain p;
  p.n = int(codes->dims[1]);
  p.k = int(codes->dims[0] * 2);
  if (scales->type != uint32_t(GgmlType::kF16) || scales->dims.size() != 2 ||
      scales->dims[1] != codes->dims[1] || scales->dims[0] == 0 ||
      p.k % scales->dims[0] != 0) {
    return shape_error(scales);
  }
  p.group = p.k / int(scales->dims[0]);
  if (p.group != 32 && p.group != 64 && p.group != 128) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": group ", p.group, " (K ", p.k, " over ",
                     scales->dims[0], " scales per row); 32, 64 or 128"));
  }
  p.has_min = mins != nullptr;
  if (p.has_min && (mins->type != scales->type || mins->dims != scales->dims)) {
    return shape_error(mins);
  }
  p.u.resize(size_t(p.n) * p.k);
  for (size_t i = 0; i < p.u.size() / 2; ++i) {
    p.u[2 * i] = codes->data[i] & 15;
    p.u[2 * i + 1] = codes->data[i] >> 4;
  }
  p.scale.resize(size_t(p.n) * p.groups());
  std::memcpy(p.scale.data(), scales->data, p.scale.size() * 2);
  if (p.has_min) {
    p.min.resize(p.scale.size());
    std::memcpy(p.min.data(), mins->data, p.min.size() * 2);
  }
  for (const GgufTensor* t : {codes, scales, mins}) {
    if (t != nullptr) file_->ReleasePages(t->data, t->num_bytes);
  }
  return p;
}

}  // namespace spikeserve
