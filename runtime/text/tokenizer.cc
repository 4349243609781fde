#include "runtime/text/tokenizer.h"

#include <algorithm>
#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "re2/re2.h"
#include "runtime/text/utf8.h"

namespace spikeserve {
namespace {

constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4,
                  kByte = 6;

// Unicode White_Space, the set llama.cpp's splitter treats as \s (RE2's \s
// is ASCII only).
constexpr char kWs[] =
    "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}"
    "\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

// The pre-tokenizer alternations. The final `(WS+)` group stands for
// llama.cpp's `\s+(?!\S)|\s+`: RE2 has no lookahead, so a whitespace run
// matched by it gives back its last character when a non-space follows
// (see PreTokenize), exactly as llama.cpp's own splitter does.
std::string Gpt2Pattern() {
  return absl::StrCat("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^", kWs,
                      "\\p{L}\\p{N}]+|([", kWs, "]+)");
}
std::string Llama3Pattern() {
  return absl::StrCat(
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|"
      "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^",
      kWs, "\\p{L}\\p{N}]+[\\r\\n]*|[", kWs, "]*[\\r\\n]+|([", kWs, "]+)");
}

bool IsWs(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Decodes the code point at s[i] (U+FFFD and length 1 for invalid bytes).
uint32_t CodePointAt(absl::string_view s, size_t i, int* len) {
  const uint8_t b = uint8_t(s[i]);
  int n = Utf8SequenceLength(b);
  if (i + n > s.size()) n = 1;
  *len = n;
  if (n == 1) return b < 0x80 ? b : 0xFFFD;
  uint32_t cp = b & (0xFF >> (n + 1));
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (uint8_t(s[i + k]) & 0x3F);
  return cp;
}

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
  for (int32_t i = 0; i < n; ++i) t->token_to_id_.emplace(s.tokens[i], i);

  if (s.model == "gpt2") {
    static const char* const kDigitSplit[] = {
        "smollm",    "starcoder", "refact", "command-r",
        "codeshell", "exaone",    "minerva"};
    static const char* const kLlama3[] = {"llama3", "llama-v3", "llama-bpe",
                                          "falcon3", "pixtral"};
    std::string pattern;
    if (std::find(std::begin(kLlama3), std::end(kLlama3), s.pre) !=
        std::end(kLlama3)) {
      pattern = Llama3Pattern();
      t->ignore_merges_ = true;
    } else if (s.pre.empty() || s.pre == "default" || s.pre == "gpt2" ||
               s.pre == "mpt" || s.pre == "olmo" ||
               std::find(std::begin(kDigitSplit), std::end(kDigitSplit),
                         s.pre) != std::end(kDigitSplit)) {
      pattern = Gpt2Pattern();
      t->split_digits_ =
          std::find(std::begin(kDigitSplit), std::end(kDigitSplit), s.pre) !=
          std::end(kDigitSplit);
    } else {
      return absl::UnimplementedError(
          absl::StrCat("tokenizer: pre-tokenizer '", s.pre,
                       "' is not supported (smollm, "
                       "default/gpt2, llama3/llama-bpe, starcoder, ...)"));
    }
    t->word_re_ = std::make_unique<re2::RE2>(pattern);
    t->digit_re_ = std::make_unique<re2::RE2>("\\p{N}");
    if (!t->word_re_->ok() || !t->digit_re_->ok()) {
      return absl::InternalError(
          absl::StrCat("tokenizer: bad regex: ", t->word_re_->error()));
    }
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

  // Special tokens, longest text first (llama.cpp's partition order).
  for (int32_t i = 0; i < n; ++i) {
    const int32_t type = t->TypeOf(i);
    if ((type == kControl || type == kUserDefined || type == kUnknown) &&
        !s.tokens[i].empty()) {
      t->special_.push_back(i);
    }
  }
  std::stable_sort(t->special_.begin(), t->special_.end(),
                   [&](int32_t a, int32_t b) {
                     return s.tokens[a].size() > s.tokens[b].size();
                   });
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

std::vector<absl::string_view> Tokenizer::PreTokenize(
    absl::string_view text) const {
  // Stage 1 (digit-splitting types): every \p{N} character alone.
  std::vector<absl::string_view> chunks;
  if (split_digits_) {
    const re2::StringPiece subject(text.data(), text.size());
    re2::StringPiece match;
    size_t at = 0;
    while (at < text.size()) {
      if (!digit_re_->Match(subject, at, text.size(), RE2::UNANCHORED, &match,
                            1)) {
        chunks.push_back(text.substr(at));
        break;
      }
      const size_t m = size_t(match.data() - text.data());
      if (m > at) chunks.push_back(text.substr(at, m - at));
      chunks.push_back(text.substr(m, match.size()));
      at = m + match.size();
    }
  } else {
    chunks.push_back(text);
  }
  // Stage 2: the word alternation inside each chunk.
  std::vector<absl::string_view> words;
  re2::StringPiece groups[2];
  for (absl::string_view chunk : chunks) {
    const re2::StringPiece subject(chunk.data(), chunk.size());
    size_t pos = 0;
    while (pos < chunk.size()) {
      if (!word_re_->Match(subject, pos, chunk.size(), RE2::ANCHOR_START,
                           groups, 2) ||
          groups[0].empty()) {
        int len;
        CodePointAt(chunk, pos, &len);  // no alternative: one character
        words.push_back(chunk.substr(pos, len));
        pos += len;
        continue;
      }
      size_t len = groups[0].size();
      if (!groups[1].empty() && pos + len < chunk.size()) {
        // `\s+(?!\S)`: a run of >= 2 whitespace followed by a non-space
        // leaves its last character to the next word.
        size_t chars = 0, last = 0;
        const absl::string_view run(groups[0].data(), groups[0].size());
        for (size_t i = 0; i < len;) {
          int l;
          CodePointAt(run, i, &l);
          last = i;
          i += l;
          ++chars;
        }
        int l;
        const uint32_t next = CodePointAt(chunk, pos + len, &l);
        if (chars > 1 && !IsWs(next)) len = last;
      }
      words.push_back(chunk.substr(pos, len));
      pos += len;
    }
  }
  return words;
}

void Tokenizer::EncodeBpeWord(const std::string& mapped,
                              std::vector<int32_t>* out) const {
  if (ignore_merges_) {
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
    // Not a token: its byte-level characters one by one.
    for (size_t i = 0; i < piece.size();) {
      const size_t n = std::min<size_t>(Utf8SequenceLength(uint8_t(piece[i])),
                                        piece.size() - i);
      auto ch = token_to_id_.find(piece.substr(i, n));
      out->push_back(ch != token_to_id_.end() ? ch->second : spec_.unk_id);
      i += n;
    }
  }
}

void Tokenizer::EncodeBpe(absl::string_view text,
                          std::vector<int32_t>* out) const {
  std::string mapped;
  for (absl::string_view word : PreTokenize(text)) {
    mapped.clear();
    for (char c : word) mapped += byte_to_unicode_[uint8_t(c)];
    EncodeBpeWord(mapped, out);
  }
}

int32_t Tokenizer::ByteToken(uint8_t b) const {
  auto it = token_to_id_.find(absl::StrFormat("<0x%02X>", b));
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
      for (char c : piece) out->push_back(ByteToken(uint8_t(c)));
    }
  }
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(
    absl::string_view text, bool add_special, bool parse_special) const {
  // Fragments: raw text spans and already-resolved special tokens.
  struct Fragment {
    int32_t token;  // -1 for raw text
    absl::string_view text;
  };
  std::vector<Fragment> frags = {{-1, text}};
  for (int32_t id : special_) {
    const int32_t type = TypeOf(id);
    if (!parse_special && (type == kControl || type == kUnknown)) continue;
    const std::string& needle = spec_.tokens[id];
    std::vector<Fragment> next;
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t at = 0;
      while (at < f.text.size()) {
        const size_t hit = f.text.find(needle, at);
        if (hit == absl::string_view::npos) break;
        if (hit > at) next.push_back({-1, f.text.substr(at, hit - at)});
        next.push_back({id, {}});
        at = hit + needle.size();
      }
      if (at < f.text.size()) next.push_back({-1, f.text.substr(at)});
    }
    frags = std::move(next);
  }
  std::vector<int32_t> out;
  if (add_special && spec_.add_bos && spec_.bos_id >= 0) {
    out.push_back(spec_.bos_id);
  }
  bool prev_special = true;  // SentencePiece: space prefix at the start
  for (const Fragment& f : frags) {
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
