// Loading, validating and applying a quant plan (proto/spikeserve/v1/
// quant_plan.proto, stored as JSON).
#ifndef SPIKESERVE_RUNTIME_QUANT_QUANT_PLAN_H_
#define SPIKESERVE_RUNTIME_QUANT_QUANT_PLAN_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_reader.h"
#include "runtime/model/model.h"
#include "runtime/model/model_config.h"
#include "spikeserve/v1/quant_plan.pb.h"

namespace spikeserve {

// Stable identity of a model file (see ModelFingerprint in the proto).
v1::ModelFingerprint FingerprintModel(const GgufFile& file,
                                      const ModelConfig& config);

// "12.down" -> {12, kDown}; errors name the text and the allowed forms.
absl::StatusOr<SiteKey> ParseSiteKey(absl::string_view text, int n_layers);

absl::StatusOr<v1::QuantPlan> ReadQuantPlan(const std::string& path);
// The same from JSON text; `source` names it in errors.
absl::StatusOr<v1::QuantPlan> ParseQuantPlan(absl::string_view json,
                                             absl::string_view source);
absl::Status WriteQuantPlan(const v1::QuantPlan& plan, const std::string& path);

// Everything a plan asks of the runtime, in native types.
struct AppliedPlan {
  QuantOptions quant;           // incl. smoothing scales and rotation
  std::vector<int32_t> prefix;  // QFeP prefix ids (empty = none)
};

// Checks the plan against the model (fingerprint, site names, layer range,
// prefix ids within the vocabulary, static scales present and positive) and
// converts it. Errors say which field is wrong.
absl::StatusOr<AppliedPlan> ApplyQuantPlan(const v1::QuantPlan& plan,
                                           const v1::ModelFingerprint& model,
                                           const ModelConfig& config);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_QUANT_QUANT_PLAN_H_
