// Loads everything a caller needs from one GGUF file: the model and its
// tokenizer. The model keeps the file mapped for its FP32 reference until
// Model::ReleaseUnquantizedWeights; the tokenizer holds its own strings.
#ifndef SPIKESERVE_RUNTIME_SERVING_MODEL_BUNDLE_H_
#define SPIKESERVE_RUNTIME_SERVING_MODEL_BUNDLE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/model.h"
#include "runtime/quant/quant_plan.h"
#include "runtime/text/tokenizer.h"

namespace spikeserve {

struct ModelBundle {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  v1::ModelFingerprint fingerprint;  // identifies the file for quant plans
  // With a plan: the QFeP prefix ids it asks for (empty = none).
  std::vector<int32_t> qfep_prefix;
  // tokenizer.chat_template (Jinja source) as stored; empty = none.
  std::string chat_template;
};

// Errors carry the path and name the field, tensor or key at fault. The
// model is built with `quant` (FP32 by default).
absl::StatusOr<ModelBundle> LoadModelBundle(const std::string& path,
                                            const QuantOptions& quant = {});
// The same, quantized as `plan` says: the plan is checked against the file's
// fingerprint before any weight is converted, so a plan for another model
// fails fast with a message naming the mismatch. `base` supplies what a
// plan does not carry (lm_head precision, warm-up rows, KV precision).
absl::StatusOr<ModelBundle> LoadModelBundle(const std::string& path,
                                            const v1::QuantPlan& plan,
                                            const QuantOptions& base = {});

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_SERVING_MODEL_BUNDLE_H_
