#include "runtime/serving/model_bundle.h"

#include "absl/strings/str_cat.h"
#include "runtime/gguf/gguf_reader.h"
#include "runtime/text/tokenizer_spec.h"

namespace spikeserve {

namespace {

// `plan` null: build with `quant`; else with what the plan asks.
absl::StatusOr<ModelBundle> Load(const std::string& path,
                                 const QuantOptions& quant,
                                 const v1::QuantPlan* plan) {
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  if (!file.ok()) return file.status();
  auto annotate = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(s.message(), " (", path, ")"));
  };
  ModelBundle b;
  absl::StatusOr<TokenizerSpec> spec = LoadTokenizerSpec(**file);
  if (!spec.ok()) return annotate(spec.status());
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
      Tokenizer::Create(*std::move(spec));
  if (!tok.ok()) return annotate(tok.status());
  b.tokenizer = *std::move(tok);
  if (absl::StatusOr<std::string> t =
          (*file)->GetString("tokenizer.chat_template");
      t.ok()) {
    b.chat_template = *std::move(t);
  }
  absl::StatusOr<ModelConfig> config = ReadModelConfig(**file);
  if (!config.ok()) return annotate(config.status());
  // Before the weights load (minutes on a large model), not after.
  if (b.tokenizer->vocab_size() != config->vocab_size) {
    return annotate(absl::InvalidArgumentError(absl::StrCat(
        "tokenizer has ", b.tokenizer->vocab_size(),
        " tokens but the model's vocabulary is ", config->vocab_size)));
  }
  b.fingerprint = FingerprintModel(**file, *config);
  QuantOptions options = quant;
  if (plan != nullptr) {
    absl::StatusOr<AppliedPlan> applied =
        ApplyQuantPlan(*plan, b.fingerprint, *config);
    if (!applied.ok()) return annotate(applied.status());
    options = std::move(applied->quant);
    options.lm_head = quant.lm_head;
    options.warmup_rows = quant.warmup_rows;
    options.kv_bf16 = quant.kv_bf16;
    b.qfep_prefix = std::move(applied->prefix);
  }
  absl::StatusOr<std::unique_ptr<Model>> model =
      Model::Load(std::shared_ptr<const GgufFile>(*std::move(file)), options);
  if (!model.ok()) return annotate(model.status());
  b.model = *std::move(model);
  return b;
}

}  // namespace

absl::StatusOr<ModelBundle> LoadModelBundle(const std::string& path,
                                            const QuantOptions& quant) {
  return Load(path, quant, nullptr);
}

absl::StatusOr<ModelBundle> LoadModelBundle(const std::string& path,
                                            const v1::QuantPlan& plan,
                                            const QuantOptions& base) {
  return Load(path, base, &plan);
}

}  // namespace spikeserve
