#include "runtime/model/model_config.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/gguf/tensor_view.h"
#include "runtime/model/arch.h"

namespace spikeserve {
namespace {

// Keeps every config value inside int and far from products that overflow.
constexpr uint32_t kMaxWidth = 1 << 20;

absl::Status Invalid(absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("model config: ", msg));
}

absl::StatusOr<int> ReadDim(const GgufFile& f, absl::string_view key,
                            uint32_t max = kMaxWidth) {
  absl::StatusOr<uint32_t> v = f.GetUint32(key);
  if (!v.ok()) return v.status();
  if (*v == 0 || *v > max) {
    return Invalid(absl::StrCat("'", key, "' is ", *v, "; allowed 1..", max));
  }
  return static_cast<int>(*v);
}

}  // namespace

absl::StatusOr<ModelConfig> ReadModelConfig(const GgufFile& f) {
  ModelConfig c;
  absl::StatusOr<std::string> arch = f.GetString("general.architecture");
  if (!arch.ok()) return arch.status();
  const ArchInfo* info = FindArch(*arch);
  if (info == nullptr) {
    return absl::UnimplementedError(absl::StrCat(
        "model config: general.architecture is '", *arch,
        "', which is not supported (supported: ", SupportedArchNames(), ")"));
  }
  c.architecture = *arch;
  c.qkv_bias = info->qkv_bias;
  c.rope_neox = info->rope_neox;
  if (absl::StatusOr<std::string> n = f.GetString("general.name"); n.ok()) {
    c.name = *n;
  }
  const std::string p = c.architecture + ".";

  struct DimKey {
    int* field;
    const char* key;
    uint32_t max;
  };
  for (const DimKey& d :
       {DimKey{&c.n_layers, "block_count", 4096},
        DimKey{&c.hidden, "embedding_length", kMaxWidth},
        DimKey{&c.ffn, "feed_forward_length", kMaxWidth},
        DimKey{&c.n_heads, "attention.head_count", 4096},
        DimKey{&c.context_length, "context_length", kMaxWidth}}) {
    absl::StatusOr<int> v = ReadDim(f, p + d.key, d.max);
    if (!v.ok()) return v.status();
    *d.field = *v;
  }

  c.n_kv_heads = c.n_heads;
  if (f.Has(p + "attention.head_count_kv")) {
    absl::StatusOr<int> v = ReadDim(f, p + "attention.head_count_kv", 4096);
    if (!v.ok()) return v.status();
    c.n_kv_heads = *v;
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    return Invalid(absl::StrCat("head_count ", c.n_heads,
                                " is not a multiple of head_count_kv ",
                                c.n_kv_heads));
  }
  if (f.Has(p + "attention.key_length")) {
    absl::StatusOr<int> v = ReadDim(f, p + "attention.key_length", 4096);
    if (!v.ok()) return v.status();
    c.head_dim = *v;
  } else {
    if (c.hidden % c.n_heads != 0) {
      return Invalid(absl::StrCat("embedding_length ", c.hidden,
                                  " is not a multiple of head_count ",
                                  c.n_heads));
    }
    c.head_dim = c.hidden / c.n_heads;
  }
  if (c.head_dim % 2 != 0) {
    return Invalid(absl::StrCat("head dimension ", c.head_dim, " is odd"));
  }
  c.rope_dims = c.head_dim;
  if (f.Has(p + "rope.dimension_count")) {
    absl::StatusOr<int> v = ReadDim(f, p + "rope.dimension_count", 4096);
    if (!v.ok()) return v.status();
    if (*v > c.head_dim || *v % 2 != 0) {
      return Invalid(absl::StrCat("rope.dimension_count ", *v,
                                  " must be even and <= head dim ",
                                  c.head_dim));
    }
    c.rope_dims = *v;
  }
  if (f.Has(p + "rope.freq_base")) {
    absl::StatusOr<double> v = f.GetFloat(p + "rope.freq_base");
    if (!v.ok()) return v.status();
    // In float, as RoPE uses it: NaN, or a FLOAT64 beyond float (inf),
    // would leave only the first frequency.
    if (!(*v > 1.0 && *v <= 1e12)) {
      return Invalid(
          absl::StrCat("rope.freq_base is ", *v, "; allowed (1, 1e12]"));
    }
    c.rope_base = static_cast<float>(*v);
  }
  if (f.Has(p + "expert_count")) {
    absl::StatusOr<uint64_t> v = f.GetUint(p + "expert_count");
    if (!v.ok()) return v.status();
    if (*v > 0) {
      return absl::UnimplementedError(absl::StrCat(
          "model config: ", p, "expert_count is ", *v,
          ": mixture-of-experts models (Mixtral) are not supported"));
    }
  }
  if (f.Has(p + "rope.scaling.type")) {
    absl::StatusOr<std::string> v = f.GetString(p + "rope.scaling.type");
    if (!v.ok()) return v.status();
    if (*v == "linear") {
      absl::StatusOr<double> factor = f.GetFloat(p + "rope.scaling.factor");
      if (!factor.ok()) return factor.status();
      if (!(*factor >= 1 && *factor <= 1024)) {
        return Invalid(absl::StrCat(p, "rope.scaling.factor is ", *factor,
                                    "; allowed 1..1024"));
      }
      c.rope_freq_scale = float(1.0 / *factor);
    } else if (*v != "none") {
      return absl::UnimplementedError(absl::StrCat(
          "model config: ", p, "rope.scaling.type is '", *v,
          "', which is not supported (none, linear; LLaMA 3's llama3 "
          "scaling comes as rope_freqs.weight)"));
    }
  }
  if (f.FindTensor("rope_freqs.weight") != nullptr) {
    absl::StatusOr<TensorView> v =
        ViewTensor(f, "rope_freqs.weight", 1, c.rope_dims / 2);
    if (!v.ok()) return v.status();
    c.rope_freq_factors.resize(c.rope_dims / 2);
    v->DequantizeRow(0, c.rope_freq_factors.data());
    for (float x : c.rope_freq_factors) {
      if (!(x > 0 && x < 1e6f)) {
        return Invalid("rope_freqs.weight holds a factor outside (0, 1e6)");
      }
    }
  }
  absl::StatusOr<double> eps =
      f.GetFloat(p + "attention.layer_norm_rms_epsilon");
  if (!eps.ok()) return eps.status();
  // A FLOAT64 below float's range became 0: an all-zero row gave NaN.
  if (!(*eps >= 1e-30 && *eps < 1)) {
    return Invalid(absl::StrCat("attention.layer_norm_rms_epsilon is ", *eps,
                                "; allowed [1e-30, 1)"));
  }
  c.rms_eps = static_cast<float>(*eps);

  if (f.Has(p + "vocab_size")) {
    absl::StatusOr<int> v = ReadDim(f, p + "vocab_size", 1 << 24);
    if (!v.ok()) return v.status();
    c.vocab_size = *v;
  } else {
    const GgufValue* tokens = f.Find("tokenizer.ggml.tokens");
    if (tokens == nullptr || tokens->type != GgufValueType::kArray) {
      return absl::NotFoundError(
          "gguf: required metadata key 'tokenizer.ggml.tokens' is missing");
    }
    if (tokens->count == 0 || tokens->count > (1 << 24)) {
      return Invalid("tokenizer.ggml.tokens has no or too many entries");
    }
    c.vocab_size = static_cast<int>(tokens->count);
  }
  if (f.Has(p + "attention.sliding_window")) {
    absl::StatusOr<int> v = ReadDim(f, p + "attention.sliding_window");
    if (!v.ok()) return v.status();
    c.sliding_window = *v;
    c.context_length = std::min(c.context_length, *v);
  }
  c.tied_output = f.FindTensor("output.weight") == nullptr;
  return c;
}

}  // namespace spikeserve
