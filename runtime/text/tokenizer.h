// Tokenizers of LLaMA-family GGUF models, matching llama.cpp token for token:
// byte-level BPE (tokenizer.ggml.model = "gpt2": SmolLM2, LLaMA-3, Qwen2)
// with the pre-tokenizer of its `tokenizer.ggml.pre` type (pre_tokenizer.h),
// and SentencePiece-style BPE ("llama": LLaMA-2, Mistral, Phi-3) with byte
// fallback. Special (control and user-defined) tokens are split out of the
// text first, as llama.cpp's tokenizer_st_partition does. Checked against
// llama.cpp's own test vectors and llama.cpp itself
// (tests/tokenizer_vocab_test.cc).
#ifndef SPIKESERVE_RUNTIME_TEXT_TOKENIZER_H_
#define SPIKESERVE_RUNTIME_TEXT_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/text/special_split.h"

namespace spikeserve {

class PreTokenizer;

// Everything the tokenizer needs, extracted from the tokenizer.ggml.* keys
// (see tokenizer_spec.h).
struct TokenizerSpec {
  std::string model;  // "gpt2" (byte-level BPE) or "llama" (SentencePiece)
  std::string pre;    // gpt2 pre-tokenizer: "smollm", "llama-bpe", "default"...
  std::string name;   // general.name: llama.cpp keys a few token
                      // attributes on it (Phi-3's RSTRIP)
  std::vector<std::string> tokens;   // id -> piece
  std::vector<int32_t> token_types;  // 1 normal, 2 unknown, 3 control,
                                     // 4 user-defined, 5 unused, 6 byte;
                                     // empty = all normal
  std::vector<float> scores;         // SentencePiece merge scores
  std::vector<std::string> merges;   // gpt2: "left right", rank = index
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false, add_eos = false, add_space_prefix = false;
};

// Immutable after Create; safe for concurrent const use.
class Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(TokenizerSpec spec);
  ~Tokenizer();

  // add_special: BOS/EOS as the model's metadata asks. parse_special: text
  // equal to a control token becomes that token (user-defined tokens are
  // always recognised, as in llama.cpp).
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              bool add_special,
                                              bool parse_special) const;
  // Concatenated token bytes (may end inside a UTF-8 sequence).
  // render_special = false drops control tokens. Bad ids: InvalidArgument.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool render_special = true) const;
  // Raw bytes of one token (control tokens as their text).
  absl::StatusOr<std::string> TokenBytes(int32_t id) const;

  int32_t vocab_size() const { return int32_t(spec_.tokens.size()); }
  // Bytes of the longest token's text as stored (at least the raw bytes it
  // stands for): a text longer than n times this has more than n tokens,
  // which callers check before tokenizing it.
  size_t max_token_bytes() const { return max_token_bytes_; }
  int32_t bos_id() const { return spec_.bos_id; }
  int32_t eos_id() const { return spec_.eos_id; }
  bool add_space_prefix() const { return spec_.add_space_prefix; }
  // The model's metadata asks for BOS before a prompt (add_bos_token).
  bool add_bos() const { return spec_.add_bos && spec_.bos_id >= 0; }
  bool IsControl(int32_t id) const;
  // EOS and end-of-turn tokens (<|im_end|>, <|eot_id|>, <|endoftext|>, ...),
  // collected as llama.cpp does.
  bool IsEndOfGeneration(int32_t id) const;

 private:
  Tokenizer() = default;
  int32_t TypeOf(int32_t id) const;
  // Appends the tokens of a plain-text fragment.
  void EncodeBpe(absl::string_view text, std::vector<int32_t>* out) const;
  void EncodeBpeWord(const std::string& mapped,
                     std::vector<int32_t>* out) const;
  void EncodeSpm(absl::string_view text, std::vector<int32_t>* out) const;
  int32_t ByteToken(uint8_t b) const;

  TokenizerSpec spec_;
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  absl::flat_hash_map<std::string, int32_t> merge_rank_;  // "left right"
  size_t max_token_bytes_ = 1;
  // Control and user-defined tokens, longest first (llama.cpp's partition
  // order); Phi-3's eat the whitespace after them.
  std::unique_ptr<SpecialSplitter> splitter_;
  std::vector<int32_t> eog_;
  std::unique_ptr<PreTokenizer> pre_;         // gpt2 only
  std::vector<std::string> byte_to_unicode_;  // gpt2 byte -> UTF-8 char
  absl::flat_hash_map<uint32_t, uint8_t> unicode_to_byte_;
};

// Turns token ids into UTF-8 text incrementally without ever emitting a
// broken UTF-8 sequence: bytes of an incomplete character are held back
// until complete; invalid bytes become U+FFFD. Not thread-safe.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer* tok,
                                bool render_special = true);
  absl::StatusOr<std::string> Push(int32_t id);
  // Whatever is held back, invalid or incomplete bytes as U+FFFD.
  std::string Flush();

 private:
  std::string Drain(bool final);
  const Tokenizer* tok_;
  bool render_special_;
  bool first_ = true;
  std::string pending_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_TEXT_TOKENIZER_H_
