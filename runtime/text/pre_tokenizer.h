// Byte-level BPE pre-tokenizers: the `tokenizer.ggml.pre` types of
// llama.cpp, each a list of regex split steps run through RE2, that cut a
// text into the words BPE then merges inside.
#ifndef SPIKESERVE_RUNTIME_TEXT_PRE_TOKENIZER_H_
#define SPIKESERVE_RUNTIME_TEXT_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace re2 {
class RE2;
}

namespace spikeserve {

// Immutable after Create; safe for concurrent const use.
class PreTokenizer {
 public:
  // `name` is the GGUF `tokenizer.ggml.pre` value ("" = llama.cpp's
  // default). Names llama.cpp writes for the same regexes are aliases
  // (`gpt-2` and `gpt2`, `llama-bpe` and `llama3`, ...). Unknown names:
  // Unimplemented, listing the supported ones.
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> Create(
      absl::string_view name);
  ~PreTokenizer();

  // The words of `text`, in order; their concatenation is `text`.
  std::vector<absl::string_view> Split(absl::string_view text) const;

  // LLaMA 3 style: a word that is itself a vocabulary token is emitted
  // whole, without merging (llama.cpp's ignore_merges).
  bool ignore_merges() const { return ignore_merges_; }

  // Whether llama.cpp adds BOS by default for this type (the LLaMA 3
  // family) when the file has no tokenizer.ggml.add_bos_token.
  static bool DefaultAddBos(absl::string_view name);

  // Every accepted name, for error messages and docs.
  static std::string SupportedNames();

 private:
  struct Step;
  PreTokenizer();

  std::vector<Step> steps_;
  bool ignore_merges_ = false;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_TEXT_PRE_TOKENIZER_H_
