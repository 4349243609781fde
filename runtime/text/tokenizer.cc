#include "runtime/text/tokenizer.h"

#include <algorithm>
#include <queue>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/text/pre_tokenizer.h"
#include "runtime/text/utf8.h"

namespace spikeserve {
namespace {

constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4,
                  kByte = 6;

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the
// others for U+0100 + n in byte order.
std::vector<uint32_t> ByteCodePoints() {
  std::vector<uint32_t> cps(256);
  uint32_t n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable =
        (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    cps[b] = printable ? uint32_t(b) : 256 + n++;
  }
  return cps;
}

// One symbol of a word under merging: a byte range of the word's text,
// doubly linked to its live neighbours.
struct Symbol {
  int prev, next;
  size_t start, len;
};

// A candidate merge of symbols `left` and `left`'s next.
struct Bigram {
  int left, right;
  double priority;  // smaller pops first
  size_t size;      // bytes of the merged text, to detect stale entries
  bool operator<(const Bigram& o) const {  // for std::priority_queue (max)
    return priority > o.priority || (priority == o.priority && left > o.left);
  }
};

std::vector<Symbol> InitialSymbols(absl::string_view text) {
  std::vector<Symbol> s;
  for (size_t i = 0; i < text.size();) {
    size_t n =
        std::min<size_t>(Utf8SequenceLength(uint8_t(text[i])), text.size() - i);
    s.push_back({int(s.size()) - 1, int(s.size()) + 1, i, n});
    i += n;
  }
  if (!s.empty()) s.back().next = -1;
  return s;
}

// The merge loop shared by BPE (priority = rank) and SentencePiece
// (priority = -score): seeds every adjacent pair through `try_add`, then
// applies the best bigram until none is left, skipping entries made stale
// by an earlier merge of either side, and offering the new neighbours.
template <typename TryAdd>
void MergeAll(std::vector<Symbol>* symbols, std::priority_queue<Bigram>* queue,
              TryAdd try_add) {
  std::vector<Symbol>& s = *symbols;
  for (int i = 0; i + 1 < int(s.size()); ++i) try_add(i, i + 1);
  while (!queue->empty()) {
    const Bigram b = queue->top();
    queue->pop();
    Symbol& l = s[b.left];
    Symbol& r = s[b.right];
    if (l.len == 0 || r.len == 0 || l.next != b.right ||
        l.len + r.len != b.size) {
      continue;
    }
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) s[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
}

}  // namespace

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(
    TokenizerSpec spec) {
  auto t = std::unique_ptr<Tokenizer>(new Tokenizer());
  const int n = int(spec.tokens.size());
  auto invalid = [](absl::string_view m) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer: ", m));
  };
  if (n == 0) return invalid("empty vocabulary");
  if (!spec.token_types.empty() && int(spec.token_types.size()) != n) {
    return invalid("token_types and tokens differ in length");
  }
  if (!spec.scores.empty() && int(spec.scores.size()) != n) {
    return invalid("scores and tokens differ in length");
  }
  for (int32_t id : {spec.bos_id, spec.eos_id, spec.unk_id, spec.pad_id}) {
    if (id >= n)
      return invalid(
          absl::StrCat("special token id ", id, " >= vocabulary ", n));
  }
  t->spec_ = std::move(spec);
  const TokenizerSpec& s = t->spec_;
  // A text listed twice maps to its last id, as in llama.cpp.
  for (int32_t i = 0; i < n; ++i) t->token_to_id_[s.tokens[i]] = i;

  if (s.model == "gpt2") {
    absl::StatusOr<std::unique_ptr<PreTokenizer>> pre =
        PreTokenizer::Create(s.pre);
    if (!pre.ok()) return pre.status();
    t->pre_ = *std::move(pre);
    for (size_t i = 0; i < s.merges.size(); ++i) {
      const size_t sp = s.merges[i].find(' ', 1);
      if (sp == std::string::npos) {
        return invalid(absl::StrCat("merge ", i, " '", s.merges[i],
                                    "' is not 'left right'"));
      }
      t->merge_rank_.emplace(s.merges[i], int32_t(i));
    }
    const std::vector<uint32_t> cps = ByteCodePoints();
    t->byte_to_unicode_.resize(256);
    for (int b = 0; b < 256; ++b) {
      AppendUtf8(cps[b], &t->byte_to_unicode_[b]);
      t->unicode_to_byte_[cps[b]] = uint8_t(b);
    }
  } else if (s.model == "llama") {
    if (s.scores.empty())
      return invalid("SentencePiece vocabulary without scores");
  } else {
    return absl::UnimplementedError(absl::StrCat(
        "tokenizer: model '", s.model, "' is not supported (gpt2, llama)"));
  }

  for (const std::string& token : s.tokens) {
    t->max_token_bytes_ = std::max(t->max_token_bytes_, token.size());
  }
  // Special tokens, longest text first (llama.cpp's partition order).
  std::vector<int32_t> special;
  absl::flat_hash_set<int32_t> rstrip;  // eat the whitespace after them
  for (int32_t i = 0; i < n; ++i) {
    const int32_t type = t->TypeOf(i);
    if ((type == kControl || type == kUserDefined || type == kUnknown) &&
        !s.tokens[i].empty()) {
      special.push_back(i);
    }
  }
  std::stable_sort(special.begin(), special.end(), [&](int32_t a, int32_t b) {
    return s.tokens[a].size() > s.tokens[b].size();
  });
  // llama.cpp sets token attributes by model name that the file does not
  // carry: a Phi-3 model drops the whitespace after its special tokens
  // (RSTRIP), except after <unk>, <s> and <|endoftext|>.
  const std::string name = absl::AsciiStrToLower(s.name);
  if (absl::StrContains(name, "phi-3") || absl::StrContains(name, "phi3")) {
    rstrip.insert(special.begin(), special.end());
    auto set = [&](const char* text, bool on) {
      auto it = t->token_to_id_.find(text);
      if (it == t->token_to_id_.end()) return;
      if (on) {
        rstrip.insert(it->second);
      } else {
        rstrip.erase(it->second);
      }
    };
    set("</s>", true);
    for (const char* text : {"<unk>", "<s>", "<|endoftext|>"}) {
      set(text, false);
    }
  }
  std::vector<SpecialToken> specials;
  specials.reserve(special.size());
  for (int32_t id : special) {
    const int32_t type = t->TypeOf(id);
    specials.push_back({s.tokens[id], id, rstrip.contains(id),
                        type == kControl || type == kUnknown});
  }
  t->splitter_ = std::make_unique<SpecialSplitter>(std::move(specials));
  static const char* const kEogTexts[] = {
      "<|eot_id|>",    "<|im_end|>", "<|end|>",   "<end_of_turn>",
      "<|endoftext|>", "<EOT>",      "<|eom_id|>"};
  if (s.eos_id >= 0) t->eog_.push_back(s.eos_id);
  for (const char* text : kEogTexts) {
    auto it = t->token_to_id_.find(text);
    if (it != t->token_to_id_.end()) t->eog_.push_back(it->second);
  }
  return t;
}

int32_t Tokenizer::TypeOf(int32_t id) const {
  return spec_.token_types.empty() ? kNormal : spec_.token_types[id];
}

bool Tokenizer::IsControl(int32_t id) const {
  return id >= 0 && id < vocab_size() && TypeOf(id) == kControl;
}

bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  return std::find(eog_.begin(), eog_.end(), id) != eog_.end();
}

void Tokenizer::EncodeBpeWord(const std::string& mapped,
                              std::vector<int32_t>* out) const {
  if (pre_->ignore_merges()) {
    auto it = token_to_id_.find(mapped);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  // Lowest merge rank first, leftmost on ties (llama.cpp's order); a
  // bigram's rank is looked up by its "left right" text.
  std::vector<Symbol> symbols = InitialSymbols(mapped);
  std::priority_queue<Bigram> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const std::string k =
        absl::StrCat(absl::string_view(mapped).substr(symbols[left].start,
                                                      symbols[left].len),
                     " ",
                     absl::string_view(mapped).substr(symbols[right].start,
                                                      symbols[right].len));
    auto it = merge_rank_.find(k);
    if (it == merge_rank_.end()) return;
    queue.push({left, right, double(it->second),
                symbols[left].len + symbols[right].len});
  };
  MergeAll(&symbols, &queue, try_add);
  for (const Symbol& sym : symbols) {
    if (sym.len == 0) continue;
    const std::string piece = mapped.substr(sym.start, sym.len);
    auto it = token_to_id_.find(piece);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
      continue;
    }
    // Not a token: llama.cpp looks up each byte of the mapped text alone
    // and drops the bytes that are no token, so a character the vocabulary
    // cannot spell (Falcon has no token for \v) gives no token at all.
    for (char c : piece) {
      auto ch = token_to_id_.find(absl::string_view(&c, 1));
      if (ch != token_to_id_.end()) out->push_back(ch->second);
    }
  }
}

void Tokenizer::EncodeBpe(absl::string_view text,
                          std::vector<int32_t>* out) const {
  std::string mapped;
  for (absl::string_view word : pre_->Split(text)) {
    mapped.clear();
    for (char c : word) mapped += byte_to_unicode_[uint8_t(c)];
    EncodeBpeWord(mapped, out);
  }
}

int32_t Tokenizer::ByteToken(uint8_t b) const {
  // llama.cpp: <0xXX>, else the byte itself as a token.
  auto it = token_to_id_.find(absl::StrFormat("<0x%02X>", b));
  if (it == token_to_id_.end()) {
    const char c = char(b);
    it = token_to_id_.find(absl::string_view(&c, 1));
  }
  return it != token_to_id_.end() ? it->second : spec_.unk_id;
}

void Tokenizer::EncodeSpm(absl::string_view text,
                          std::vector<int32_t>* out) const {
  // Spaces are escaped as U+2581 ("▁").
  std::string escaped;
  for (char c : text) {
    if (c == ' ') {
      escaped += "\xE2\x96\x81";
    } else {
      escaped += c;
    }
  }
  std::vector<Symbol> symbols = InitialSymbols(escaped);
  // Highest score merges first (priority = -score), leftmost on ties; only
  // pairs whose concatenation is a vocabulary token can merge.
  absl::flat_hash_map<std::string, std::pair<int, int>> rev_merge;
  std::priority_queue<Bigram> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const std::string merged = escaped.substr(
        symbols[left].start, symbols[left].len + symbols[right].len);
    auto it = token_to_id_.find(merged);
    if (it == token_to_id_.end()) return;
    queue.push({left, right, -double(spec_.scores[it->second]), merged.size()});
    rev_merge[merged] = {left, right};
  };
  MergeAll(&symbols, &queue, try_add);
  // Each final symbol is a token, or bytes (<0xXX>) when it is not.
  for (const Symbol& sym : symbols) {
    if (sym.len == 0) continue;
    const std::string piece = escaped.substr(sym.start, sym.len);
    auto it = token_to_id_.find(piece);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
    } else {
      for (char c : piece) {
        // A vocabulary without byte tokens or <unk> cannot spell it: no id
        // (llama.cpp would throw).
        const int32_t id = ByteToken(uint8_t(c));
        if (id >= 0) out->push_back(id);
      }
    }
  }
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(
    absl::string_view text, bool add_special, bool parse_special) const {
  // Raw text spans and special tokens (special_split.h). An empty text
  // has no piece at all, so it gives no tokens (llama.cpp; SentencePiece
  // would otherwise tokenize the space prefix alone).
  const std::vector<SpecialPiece> frags = splitter_->Split(text, parse_special);
  std::vector<int32_t> out;
  if (add_special && spec_.add_bos && spec_.bos_id >= 0) {
    out.push_back(spec_.bos_id);
  }
  bool prev_special = true;  // SentencePiece: space prefix at the start
  for (const SpecialPiece& f : frags) {
    if (f.token >= 0) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    if (spec_.model == "gpt2") {
      EncodeBpe(f.text, &out);
    } else {
      std::string t = spec_.add_space_prefix && prev_special ? " " : "";
      t.append(f.text.data(), f.text.size());
      EncodeSpm(t, &out);
    }
    prev_special = false;
  }
  if (add_special && spec_.add_eos && spec_.eos_id >= 0) {
    out.push_back(spec_.eos_id);
  }
  return out;
}

absl::StatusOr<std::string> Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token id ", id, " is outside the vocabulary [0, ", vocab_size(), ")"));
  }
  const std::string& piece = spec_.tokens[id];
  const int32_t type = TypeOf(id);
  if (type == kControl || type == kUserDefined || type == kUnknown) {
    return piece;
  }
  std::string out;
  if (spec_.model == "gpt2") {
    for (size_t i = 0; i < piece.size();) {
      int len;
      const uint32_t cp = CodePointAt(piece, i, &len);
      auto it = unicode_to_byte_.find(cp);
      if (it != unicode_to_byte_.end()) {
        out.push_back(char(it->second));
      } else {
        out.append(piece, i, len);
      }
      i += len;
    }
    return out;
  }
  if (type == kByte && piece.size() == 6 && piece.rfind("<0x", 0) == 0) {
    return std::string(1, char(std::stoi(piece.substr(3, 2), nullptr, 16)));
  }
  for (size_t i = 0; i < piece.size(); ++i) {
    if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {
      out.push_back(' ');
      i += 2;
    } else {
      out.push_back(piece[i]);
    }
  }
  return out;
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool render_special) const {
  std::string out;
  bool first = true;
  for (int32_t id : ids) {
    absl::StatusOr<std::string> b = TokenBytes(id);
    if (!b.ok()) return b.status();
    if (!render_special && IsControl(id)) continue;
    // SentencePiece's added space prefix is not part of the text.
    if (first && spec_.model == "llama" && spec_.add_space_prefix &&
        !IsControl(id) && !b->empty() && (*b)[0] == ' ') {
      b->erase(0, 1);
    }
    if (!IsControl(id)) first = false;
    out += *b;
  }
  return out;
}

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer* tok,
                                           bool render_special)
    : tok_(tok), render_special_(render_special) {}

absl::StatusOr<std::string> StreamingDetokenizer::Push(int32_t id) {
  absl::StatusOr<std::string> b = tok_->TokenBytes(id);
  if (!b.ok()) return b.status();
  if (!render_special_ && tok_->IsControl(id)) return std::string();
  if (first_ && tok_->add_space_prefix() && !tok_->IsControl(id) &&
      !b->empty() && (*b)[0] == ' ') {
    b->erase(0, 1);
  }
  if (!tok_->IsControl(id)) first_ = false;
  pending_ += *b;
  return Drain(false);
}

std::string StreamingDetokenizer::Drain(bool final) {
  std::string out;
  while (!pending_.empty()) {
    size_t invalid;
    const size_t ok = CompleteUtf8Prefix(pending_, &invalid);
    out.append(pending_, 0, ok);
    pending_.erase(0, ok);
    if (invalid != std::string::npos) {
      out += "\xEF\xBF\xBD";  // U+FFFD for the bad byte
      pending_.erase(0, 1);
      continue;
    }
    if (pending_.empty() || !final) break;
    out += "\xEF\xBF\xBD";  // incomplete tail at the end
    pending_.erase(0, 1);
  }
  return out;
}

std::string StreamingDetokenizer::Flush() { return Drain(true); }

}  // namespace spikeserve
