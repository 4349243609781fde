#include "runtime/text/tokenizer_spec.h"

#include "absl/strings/str_cat.h"
#include "runtime/text/pre_tokenizer.h"

namespace spikeserve {
namespace {

// Optional special-token id: -1 when absent; error when out of range.
absl::Status ReadId(const GgufFile& f, const std::string& key, int vocab,
                    int32_t* out) {
  if (!f.Has(key)) return absl::OkStatus();
  absl::StatusOr<uint32_t> v = f.GetUint32(key);
  if (!v.ok()) return v.status();
  if (*v >= uint32_t(vocab)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer: '", key, "' = ", *v,
                     " is outside the vocabulary of ", vocab));
  }
  *out = int32_t(*v);
  return absl::OkStatus();
}

absl::Status ReadFlag(const GgufFile& f, const std::string& key, bool* out) {
  if (!f.Has(key)) return absl::OkStatus();
  absl::StatusOr<bool> v = f.GetBool(key);
  if (!v.ok()) return v.status();
  *out = *v;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerSpec> LoadTokenizerSpec(const GgufFile& f) {
  TokenizerSpec s;
  absl::StatusOr<std::string> model = f.GetString("tokenizer.ggml.model");
  if (!model.ok()) return model.status();
  s.model = *model;
  if (f.Has("tokenizer.ggml.pre")) {
    absl::StatusOr<std::string> pre = f.GetString("tokenizer.ggml.pre");
    if (!pre.ok()) return pre.status();
    s.pre = *pre;
  }
  if (f.Has("general.name")) {
    absl::StatusOr<std::string> name = f.GetString("general.name");
    if (!name.ok()) return name.status();
    s.name = *name;
  }
  absl::StatusOr<std::vector<std::string>> tokens =
      f.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return tokens.status();
  s.tokens = *std::move(tokens);
  const int vocab = int(s.tokens.size());
  if (f.Has("tokenizer.ggml.token_type")) {
    absl::StatusOr<std::vector<int32_t>> types =
        f.GetInt32Array("tokenizer.ggml.token_type");
    if (!types.ok()) return types.status();
    s.token_types = *std::move(types);
    if (int(s.token_types.size()) != vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer: 'tokenizer.ggml.token_type' has ",
                       s.token_types.size(), " entries, expected ", vocab));
    }
  }
  if (f.Has("tokenizer.ggml.scores")) {
    absl::StatusOr<std::vector<float>> scores =
        f.GetFloat32Array("tokenizer.ggml.scores");
    if (!scores.ok()) return scores.status();
    s.scores = *std::move(scores);
    if (int(s.scores.size()) != vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer: 'tokenizer.ggml.scores' has ",
                       s.scores.size(), " entries, expected ", vocab));
    }
  }
  if (f.Has("tokenizer.ggml.merges")) {
    absl::StatusOr<std::vector<std::string>> merges =
        f.GetStringArray("tokenizer.ggml.merges");
    if (!merges.ok()) return merges.status();
    s.merges = *std::move(merges);
  }
  for (auto [key, out] : {std::pair{"bos_token_id", &s.bos_id},
                          std::pair{"eos_token_id", &s.eos_id},
                          std::pair{"unknown_token_id", &s.unk_id},
                          std::pair{"padding_token_id", &s.pad_id}}) {
    if (absl::Status st =
            ReadId(f, absl::StrCat("tokenizer.ggml.", key), vocab, out);
        !st.ok()) {
      return st;
    }
  }
  // Defaults follow llama.cpp: SentencePiece vocabularies and LLaMA-3's
  // byte-level one add BOS unless the file says otherwise; SentencePiece
  // also adds a space prefix.
  s.add_bos = s.model == "llama" ||
              (s.model == "gpt2" && PreTokenizer::DefaultAddBos(s.pre));
  s.add_space_prefix = s.model == "llama";
  for (auto [key, out] : {std::pair{"add_bos_token", &s.add_bos},
                          std::pair{"add_eos_token", &s.add_eos},
                          std::pair{"add_space_prefix", &s.add_space_prefix}}) {
    if (absl::Status st =
            ReadFlag(f, absl::StrCat("tokenizer.ggml.", key), out);
        !st.ok()) {
      return st;
    }
  }
  return s;
}

}  // namespace spikeserve
