#include "runtime/quant_plan.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"

namespace spikeserve {
namespace {

// FNV-1a, 64 bit: tiny, stable across builds and machines (std::hash and
// absl::Hash are not), and enough to tell models apart.
class Fnv1a {
 public:
  void Add(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) {
      h_ ^= p[i];
      h_ *= 0x100000001b3ull;
    }
  }
  template <typename T>
  void AddPod(T v) {
    Add(&v, sizeof(v));
  }
  void AddString(absl::string_view s) {
    AddPod<uint64_t>(s.size());
    Add(s.data(), s.size());
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

absl::Status PlanError(absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("quant plan: ", msg));
}

}  // namespace

v1::ModelFingerprint FingerprintModel(const GgufFile& file,
                                      const ModelConfig& c) {
  Fnv1a h;
  for (int v : {c.n_layers, c.hidden, c.ffn, c.n_heads, c.n_kv_heads,
                c.head_dim, c.vocab_size, c.context_length}) {
    h.AddPod(v);
  }
  h.AddPod(c.rope_base);
  h.AddPod(c.rms_eps);
  constexpr uint64_t kSample = 4096;
  for (const GgufTensor& t : file.tensors()) {
    h.AddString(t.name);
    h.AddPod(t.type);
    for (uint64_t d : t.dims) h.AddPod(d);
    const uint64_t head = std::min(kSample, t.num_bytes);
    h.Add(t.data, head);
    if (t.num_bytes > kSample) h.Add(t.data + t.num_bytes - kSample, kSample);
  }
  v1::ModelFingerprint fp;
  fp.set_name(c.name);
  fp.set_hash(absl::StrCat(absl::Hex(h.value(), absl::kZeroPad16)));
  fp.set_layers(c.n_layers);
  fp.set_hidden(c.hidden);
  fp.set_ffn(c.ffn);
  fp.set_vocab_size(c.vocab_size);
  return fp;
}

absl::StatusOr<SiteKey> ParseSiteKey(absl::string_view text, int n_layers) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
  int layer = -1;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &layer)) {
    return PlanError(
        absl::StrCat("module '", text, "' is not LAYER.SITE (e.g. 1.down)"));
  }
  std::optional<Site> site = ParseSite(parts[1]);
  if (!site) {
    return PlanError(absl::StrCat("module '", text, "': unknown site '",
                                  parts[1], "' (qkv, o, gate_up, down)"));
  }
  if (layer < 0 || layer >= n_layers) {
    return PlanError(absl::StrCat("module '", text, "': layer ", layer,
                                  " outside 0..", n_layers - 1));
  }
  return SiteKey{layer, *site};
}

absl::StatusOr<v1::QuantPlan> ReadQuantPlan(const std::string& path) {
  std::ifstream f(path);
  if (!f) {
    return absl::NotFoundError(
        absl::StrCat("quant plan: cannot read '", path, "'"));
  }
  std::stringstream ss;
  ss << f.rdbuf();
  return ParseQuantPlan(ss.str(), absl::StrCat("'", path, "'"));
}

absl::StatusOr<v1::QuantPlan> ParseQuantPlan(absl::string_view json,
                                             absl::string_view source) {
  v1::QuantPlan plan;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &plan, opts);
  if (!st.ok()) {
    return PlanError(absl::StrCat(
        source, " is not a valid plan: ", std::string(st.message())));
  }
  if (plan.version() != 1) {
    return PlanError(absl::StrCat(source, " has version ", plan.version(),
                                  "; this build reads version 1"));
  }
  return plan;
}

absl::Status WriteQuantPlan(const v1::QuantPlan& plan,
                            const std::string& path) {
  std::string json;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  auto st = google::protobuf::util::MessageToJsonString(plan, &json, opts);
  if (!st.ok()) return absl::InternalError(std::string(st.message()));
  std::ofstream f(path, std::ios::trunc);
  f << json;
  if (!f) {
    return absl::PermissionDeniedError(
        absl::StrCat("quant plan: cannot write '", path, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<AppliedPlan> ApplyQuantPlan(const v1::QuantPlan& plan,
                                           const v1::ModelFingerprint& model,
                                           const ModelConfig& c) {
  if (plan.model().hash() != model.hash()) {
    return absl::FailedPreconditionError(
        absl::StrCat("quant plan: calibrated for model '", plan.model().name(),
                     "' (", plan.model().hash(), "), not for this model '",
                     model.name(), "' (", model.hash(), ")"));
  }
  AppliedPlan out;
  QuantOptions& q = out.quant;
  q.w8a8 = true;
  switch (plan.activation_mode()) {
    case v1::PER_TENSOR_DYNAMIC:
      q.mode = ActQuantMode::kPerTensorDynamic;
      break;
    case v1::PER_TOKEN_DYNAMIC:
      q.mode = ActQuantMode::kPerTokenDynamic;
      break;
    case v1::PER_TENSOR_STATIC:
      q.mode = ActQuantMode::kPerTensorStatic;
      break;
    default:
      return PlanError("activation_mode is unspecified");
  }
  for (const std::string& m : plan.qfem().modules()) {
    absl::StatusOr<SiteKey> k = ParseSiteKey(m, c.n_layers);
    if (!k.ok())
      return absl::Status(k.status().code(),
                          absl::StrCat("qfem.modules: ", k.status().message()));
    q.fp32_sites.insert(*k);
  }
  q.qfem_bf16 = plan.qfem().bf16();
  for (const v1::SiteStats& s : plan.sites()) {
    absl::StatusOr<SiteKey> k =
        ParseSiteKey(absl::StrCat(s.layer(), ".", s.site()), c.n_layers);
    if (!k.ok())
      return absl::Status(k.status().code(),
                          absl::StrCat("sites: ", k.status().message()));
    if (q.mode == ActQuantMode::kPerTensorStatic && !q.fp32_sites.count(*k)) {
      if (!(s.static_absmax() > 0 && std::isfinite(s.static_absmax()))) {
        return PlanError(absl::StrCat("site ", SiteKeyName(*k),
                                      " has no positive static_absmax"));
      }
      q.static_absmax[*k] = float(s.static_absmax());
    }
    if (plan.smoothing().enabled() && s.smooth_scales_size() > 0) {
      const int width = k->site == Site::kDown ? c.ffn : c.hidden;
      if (k->site == Site::kO || s.smooth_scales_size() != width) {
        return PlanError(absl::StrCat("site ", SiteKeyName(*k), " has ",
                                      s.smooth_scales_size(),
                                      " smoothing scales; expected ", width,
                                      " (qkv, gate_up and down only)"));
      }
      q.smooth_scales[*k].assign(s.smooth_scales().begin(),
                                 s.smooth_scales().end());
    }
  }
  if (q.mode == ActQuantMode::kPerTensorStatic) {
    q.guard_factor = float(plan.spike_guard().factor());
  }
  for (int32_t id : plan.qfep().token_ids()) {
    if (id < 0 || id >= c.vocab_size) {
      return PlanError(absl::StrCat("qfep.token_ids: id ", id,
                                    " outside the vocabulary [0, ",
                                    c.vocab_size, ")"));
    }
    out.prefix.push_back(id);
  }
  if (int(out.prefix.size()) >= c.context_length) {
    return PlanError("qfep prefix fills the whole context");
  }
  q.down_hadamard = plan.rotation().down_hadamard();
  return out;
}

}  // namespace spikeserve
