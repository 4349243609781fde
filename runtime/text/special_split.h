// Splitting text at special tokens before BPE, as llama.cpp does: the
// specials are taken one after another in a fixed order (longest text
// first), each at its leftmost non-overlapping occurrences within the raw
// text the earlier ones left; a special may eat the ASCII whitespace after
// it (rstrip, Phi-3).
//
// Done that way literally, every special searches all the raw text: 256
// specials (Llama 3) cost ~1 s per MiB of text made of their first bytes,
// on a request thread. Here one pass over a trie of the specials finds
// every occurrence (cost: the longest special prefix at each position),
// and the order above is replayed over those occurrences only. The
// literal form is kept as the reference, and as the fallback when the
// occurrences would exceed 4 per byte (memory): that takes nested specials
// (e.g. user-defined runs of newlines, each a prefix of the next), so on
// such a vocabulary a crafted text gets the literal form's cost back. The
// vocabularies of the families served here (Llama 3, Qwen2, Mistral,
// SmolLM2) and the 13 test vocabularies start at most one special at any
// position.
//
// Thread-safety: const methods are safe to call concurrently.
#ifndef SPIKESERVE_RUNTIME_TEXT_SPECIAL_SPLIT_H_
#define SPIKESERVE_RUNTIME_TEXT_SPECIAL_SPLIT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace spikeserve {

struct SpecialPiece {
  int32_t token;           // the special's id, or -1 for raw text
  absl::string_view text;  // raw text (empty for a special)
};

struct SpecialToken {
  std::string text;  // not empty
  int32_t id;
  bool rstrip = false;   // eats the ASCII whitespace after it
  bool control = false;  // matched only when specials are parsed
};

class SpecialSplitter {
 public:
  // `specials` in the order they are taken.
  explicit SpecialSplitter(std::vector<SpecialToken> specials);

  // `text` as raw pieces and specials, in order. Control specials are
  // matched only when `parse_control`.
  std::vector<SpecialPiece> Split(absl::string_view text,
                                  bool parse_control) const;
  // The literal algorithm (one search of the raw text per special): the
  // reference for tests, and the fallback.
  std::vector<SpecialPiece> SplitSequential(absl::string_view text,
                                            bool parse_control) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int>> next;  // sorted by byte
    std::vector<int> ends;                      // ranks of specials ending here
  };
  int Child(int node, uint8_t b) const;

  std::vector<SpecialToken> specials_;
  std::vector<Node> trie_;  // node 0: the root
  int root_[256];           // the root's children by byte (-1: none)
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_TEXT_SPECIAL_SPLIT_H_
