#include "runtime/quant/quant_plan.h"

#include <cfloat>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/text_file.h"
#include "google/protobuf/util/json_util.h"
#include "runtime/quant/w4_weights_file.h"

namespace spikeserve {
namespace {

// The input width of a site's matmul: ffn for down, q_dim for o, hidden
// for the norm outputs qkv and gate_up read.
int SiteInputWidth(const ModelConfig& c, Site site) {
  if (site == Site::kDown) return c.ffn;
  return site == Site::kO ? c.q_dim() : c.hidden;
}

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

// The range SmoothScales (smoothing.cc) clamps to: what calibration writes.
constexpr double kMinSmoothScale = 1e-5, kMaxSmoothScale = 1e5;
// Largest plan file read: an 8B model's plan (smoothing scales and
// activation importance per channel) is tens of MB.
constexpr size_t kMaxPlanBytes = size_t{256} << 20;

// `field` = `v` must be finite and in [lo, hi].
absl::Status CheckRange(absl::string_view field, double v, double lo,
                        double hi) {
  if (std::isfinite(v) && v >= lo && v <= hi) return absl::OkStatus();
  return PlanError(absl::StrCat(
      field, " = ", v, " is outside the allowed range [", lo, ", ", hi, "]"));
}

// The fingerprint fields besides the hash must match too: a plan edited
// (or written) for another shape must not load because its hash was copied.
absl::Status CheckFingerprint(const v1::ModelFingerprint& plan,
                              const v1::ModelFingerprint& model) {
  if (plan.name() != model.name()) {
    return absl::FailedPreconditionError(
        absl::StrCat("quant plan: model.name = '", plan.name(),
                     "' but the model is '", model.name(), "'"));
  }
  const struct {
    const char* field;
    int plan, model;
  } dims[] = {{"layers", plan.layers(), model.layers()},
              {"hidden", plan.hidden(), model.hidden()},
              {"ffn", plan.ffn(), model.ffn()},
              {"vocab_size", plan.vocab_size(), model.vocab_size()}};
  for (const auto& d : dims) {
    if (d.plan != d.model) {
      return absl::FailedPreconditionError(
          absl::StrCat("quant plan: model.", d.field, " = ", d.plan,
                       " but the model has ", d.model));
    }
  }
  return absl::OkStatus();
}

// Calibration statistics of one site: all absent (0) or all positive and
// consistent (median <= max, ratio max/median >= 1).
absl::Status CheckSiteStats(absl::string_view name, const v1::SiteStats& s) {
  if (s.spike_ratio() == 0 && s.max_absmax() == 0 && s.median_absmax() == 0) {
    return absl::OkStatus();
  }
  if (absl::Status st = CheckRange(absl::StrCat(name, ".spike_ratio"),
                                   s.spike_ratio(), 1, FLT_MAX);
      !st.ok()) {
    return st;
  }
  if (absl::Status st = CheckRange(absl::StrCat(name, ".max_absmax"),
                                   s.max_absmax(), FLT_MIN, FLT_MAX);
      !st.ok()) {
    return st;
  }
  if (absl::Status st = CheckRange(absl::StrCat(name, ".median_absmax"),
                                   s.median_absmax(), FLT_MIN, FLT_MAX);
      !st.ok()) {
    return st;
  }
  if (s.median_absmax() > s.max_absmax()) {
    return PlanError(absl::StrCat(name, ".median_absmax = ", s.median_absmax(),
                                  " exceeds max_absmax = ", s.max_absmax()));
  }
  return absl::OkStatus();
}

// The served-input statistics (metrics only): absent (0) or finite, the
// ratio at least 1.
absl::Status CheckServedStats(absl::string_view name, const v1::SiteStats& s) {
  if (s.served_spike_ratio() != 0) {
    if (absl::Status st = CheckRange(absl::StrCat(name, ".served_spike_ratio"),
                                     s.served_spike_ratio(), 1, FLT_MAX);
        !st.ok()) {
      return st;
    }
  }
  if (s.served_median_absmax() != 0) {
    return CheckRange(absl::StrCat(name, ".served_median_absmax"),
                      s.served_median_absmax(), FLT_MIN, FLT_MAX);
  }
  return absl::OkStatus();
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
  // Bounded: plans of 8B models are tens of MB; a model file given as the
  // plan (the paths swapped) was read whole, several times over.
  absl::StatusOr<std::string> text = ReadTextFile(path, kMaxPlanBytes);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("quant plan: ", text.status().message()));
  }
  absl::StatusOr<v1::QuantPlan> plan =
      ParseQuantPlan(*text, absl::StrCat("'", path, "'"));
  if (plan.ok() && !plan->w4_weights().empty()) {
    const std::filesystem::path weights(plan->w4_weights());
    if (weights.is_relative()) {
      plan->set_w4_weights(
          (std::filesystem::path(path).parent_path() / weights).string());
    }
  }
  return plan;
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
  if (absl::Status s = WriteTextFileAtomically(path, json); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("quant plan: ", s.message()));
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
  if (absl::Status s = CheckFingerprint(plan.model(), model); !s.ok()) return s;
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
  for (int i = 0; i < plan.qfem().modules_size(); ++i) {
    const std::string& m = plan.qfem().modules(i);
    absl::StatusOr<SiteKey> k = ParseSiteKey(m, c.n_layers);
    if (!k.ok())
      return absl::Status(k.status().code(),
                          absl::StrCat("qfem.modules: ", k.status().message()));
    if (!q.fp32_sites.insert(*k).second) {
      return PlanError(
          absl::StrCat("qfem.modules[", i, "]: ", m, " is listed twice"));
    }
  }
  q.qfem_bf16 = plan.qfem().bf16();
  if (absl::Status s =
          CheckRange("qfem.alpha", plan.qfem().alpha(), 0, FLT_MAX);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("qfem.loss_tolerance",
                                  plan.qfem().loss_tolerance(), 0, FLT_MAX);
      !s.ok()) {
    return s;
  }
  if (plan.smoothing().enabled()) {
    if (absl::Status s =
            CheckRange("smoothing.alpha", plan.smoothing().alpha(), 0, 1);
        !s.ok()) {
      return s;
    }
  }
  // Sites: each (layer, site) at most once, and every one of them unless
  // the plan carries no per-site data at all (a dynamic plan without
  // smoothing needs none).
  std::map<SiteKey, int> seen;     // -> index in sites
  std::vector<SiteKey> from_file;  // weight_from_file sites
  for (int i = 0; i < plan.sites_size(); ++i) {
    const v1::SiteStats& s = plan.sites(i);
    absl::StatusOr<SiteKey> k =
        ParseSiteKey(absl::StrCat(s.layer(), ".", s.site()), c.n_layers);
    if (!k.ok())
      return absl::Status(k.status().code(),
                          absl::StrCat("sites: ", k.status().message()));
    const std::string name =
        absl::StrCat("sites[", i, "] (", SiteKeyName(*k), ")");
    if (auto [it, fresh] = seen.emplace(*k, i); !fresh) {
      return PlanError(absl::StrCat(name, " repeats sites[", it->second, "]"));
    }
    if (absl::Status st = CheckSiteStats(name, s); !st.ok()) return st;
    if (absl::Status st = CheckServedStats(name, s); !st.ok()) return st;
    if (absl::Status st = CheckRange(absl::StrCat(name, ".static_absmax"),
                                     s.static_absmax(), 0, FLT_MAX);
        !st.ok()) {
      return st;
    }
    if (q.mode == ActQuantMode::kPerTensorStatic && !q.fp32_sites.count(*k)) {
      if (!(s.static_absmax() >= FLT_MIN)) {
        return PlanError(absl::StrCat(
            "site ", SiteKeyName(*k), " has static_absmax ", s.static_absmax(),
            "; static mode needs a normal positive float (>= ", FLT_MIN, ")"));
      }
      q.static_absmax[*k] = float(s.static_absmax());
    }
    if (s.weight_bits() != 0 && s.weight_bits() != 8 && s.weight_bits() != 4) {
      return PlanError(absl::StrCat(name, ".weight_bits is ", s.weight_bits(),
                                    "; 8 (W8A8, also 0) or 4 (W4A8)"));
    }
    if (s.weight_group() != 0 && s.weight_group() != 32 &&
        s.weight_group() != 64 && s.weight_group() != 128 &&
        s.weight_group() != kW4AsStored) {
      return PlanError(absl::StrCat(name, ".weight_group is ", s.weight_group(),
                                    "; 32, 64, 128, 0 (the largest that "
                                    "divides the input width) or -1 (as the "
                                    "file stores it)"));
    }
    if (s.weight_bits() == 4) {
      if (q.fp32_sites.count(*k)) {
        return PlanError(absl::StrCat(
            name, " has weight_bits 4 but is a QFeM module (unquantized)"));
      }
      q.w4_sites[*k] = s.weight_group();
      if (s.weight_min()) q.w4_min_sites.insert(*k);
      if (s.weight_from_file()) from_file.push_back(*k);
    } else if (s.weight_min()) {
      return PlanError(absl::StrCat(
          name, " has weight_min but weight_bits ", s.weight_bits(),
          "; a per-group minimum is for W4A8 (weight_bits 4) only"));
    } else if (s.weight_from_file()) {
      return PlanError(absl::StrCat(
          name, " has weight_from_file but weight_bits ", s.weight_bits(),
          "; the plan's weights file holds W4A8 (weight_bits 4) weights"));
    }
    if (s.weight_importance_size() > 0) {
      const int width = SiteInputWidth(c, k->site);
      if (s.weight_bits() != 4) {
        return PlanError(absl::StrCat(
            name, " has weight_importance but weight_bits ", s.weight_bits(),
            "; it chooses W4A8 (weight_bits 4) group scales only"));
      }
      if (s.weight_importance_size() != width) {
        return PlanError(absl::StrCat(name, " has ", s.weight_importance_size(),
                                      " weight_importance values; expected ",
                                      width, " (one per input channel)"));
      }
      for (int j = 0; j < width; ++j) {
        if (absl::Status st =
                CheckRange(absl::StrCat(name, ".weight_importance[", j, "]"),
                           s.weight_importance(j), 0, FLT_MAX);
            !st.ok()) {
          return st;
        }
      }
      q.w4_importance[*k].assign(s.weight_importance().begin(),
                                 s.weight_importance().end());
    }
    if (plan.smoothing().enabled() && s.smooth_scales_size() > 0) {
      const int width = SiteInputWidth(c, k->site);
      if (k->site == Site::kO || s.smooth_scales_size() != width) {
        return PlanError(absl::StrCat("site ", SiteKeyName(*k), " has ",
                                      s.smooth_scales_size(),
                                      " smoothing scales; expected ", width,
                                      " (qkv, gate_up and down only)"));
      }
      for (int j = 0; j < width; ++j) {
        if (absl::Status st = CheckRange(
                absl::StrCat(name, ".smooth_scales[", j, "]"),
                s.smooth_scales(j), kMinSmoothScale, kMaxSmoothScale);
            !st.ok()) {
          return st;
        }
      }
      q.smooth_scales[*k].assign(s.smooth_scales().begin(),
                                 s.smooth_scales().end());
    }
  }
  const bool needs_sites = q.mode == ActQuantMode::kPerTensorStatic ||
                           plan.smoothing().enabled() || plan.sites_size() > 0;
  if (needs_sites) {
    for (int layer = 0; layer < c.n_layers; ++layer) {
      for (Site site : {Site::kQkv, Site::kO, Site::kGateUp, Site::kDown}) {
        if (!seen.count(SiteKey{layer, site})) {
          return PlanError(absl::StrCat("sites has no entry for ",
                                        SiteKeyName({layer, site}),
                                        " (a plan lists every site of every "
                                        "layer, or none in a dynamic plan "
                                        "without smoothing)"));
        }
      }
    }
  }
  // 0 = off; else rows above factor x static_absmax run in FP32.
  const double guard = plan.spike_guard().factor();
  if (absl::Status s = CheckRange("spike_guard.factor", guard, 0, 1e6);
      !s.ok()) {
    return s;
  }
  if (q.mode == ActQuantMode::kPerTensorStatic) {
    q.guard_factor = float(guard);
  }
  for (int32_t id : plan.qfep().token_ids()) {
    if (id < 0 || id >= c.vocab_size) {
      return PlanError(absl::StrCat("qfep.token_ids: id ", id,
                                    " outside the vocabulary [0, ",
                                    c.vocab_size, ")"));
    }
    out.prefix.push_back(id);
  }
  // The rule: the prefix leaves room for a one-token prompt and one new
  // token. (Checked here, before the model loads and the prefix is
  // computed; the KV pool's share is checked when the engine starts.)
  if (int(out.prefix.size()) > c.context_length - 2) {
    return PlanError(absl::StrCat(
        "qfep.token_ids has ", out.prefix.size(),
        " tokens; the model's context of ", c.context_length,
        " must keep at least 2 positions (a one-token prompt and one new "
        "token) after the prefix, so at most ",
        std::max(0, c.context_length - 2), " prefix tokens"));
  }
  if (!std::isfinite(plan.qfep().score())) {
    return PlanError(
        absl::StrCat("qfep.score = ", plan.qfep().score(), " is not finite"));
  }
  if (plan.calibration().tokens() < 0 || plan.calibration().window() < 0 ||
      plan.calibration().windows() < 0) {
    return PlanError("calibration.tokens, .window and .windows must be >= 0");
  }
  q.down_hadamard = plan.rotation().down_hadamard();
  q.norm_hadamard = plan.rotation().norm_hadamard();
  if (!from_file.empty()) {
    if (plan.w4_weights().empty()) {
      return PlanError(absl::StrCat(
          "site ", SiteKeyName(from_file[0]),
          " has weight_from_file but the plan names no w4_weights file"));
    }
    absl::StatusOr<std::shared_ptr<const W4WeightsFile>> f =
        W4WeightsFile::Open(plan.w4_weights(), model.hash());
    if (!f.ok()) return f.status();
    for (const SiteKey& k : from_file) {
      if (!(*f)->Has(k)) {
        return PlanError(
            absl::StrCat("site ", SiteKeyName(k), " has weight_from_file but ",
                         plan.w4_weights(), " has no weights for it"));
      }
    }
    q.w4_given = *std::move(f);
  }
  return out;
}

}  // namespace spikeserve
