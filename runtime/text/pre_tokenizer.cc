#include "runtime/text/pre_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "re2/re2.h"
#include "runtime/text/unicode_classes.h"
#include "runtime/text/utf8.h"

namespace spikeserve {
namespace {

// Unicode White_Space, the set llama.cpp's splitters treat as \s (RE2's \s
// is ASCII only; llama.cpp maps every other White_Space character to \v
// before its std::regex runs, so its \s is exactly this set).
constexpr char kWs[] =
    "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}"
    "\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

bool IsWs(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// How a step cuts each piece the previous step left.
enum class StepKind {
  // llama.cpp's std::regex path (regex_iterator): every match is a piece,
  // and so is every stretch of text between two matches.
  kMatches,
  // llama.cpp's hand-written splitters of the GPT-2 and LLaMA 3 regexes
  // (and regexes of the same shape): the alternation is matched at each
  // position in turn; a position no alternative matches is a piece of one
  // character. The final alternative `[WS]+` stands for `\s+(?!\S)|\s+`:
  // RE2 has no lookahead, so a whitespace run of two or more characters
  // followed by a non-space gives its last character back to the next
  // piece, exactly as the lookahead would. Only that alternative matches
  // whitespace alone, which is how the run is recognised without a capture
  // group: RE2's DFA alone then finds the match, 3-5x faster than with a
  // submatch (1 MB of English: 190 instead of 600 ms for SmolLM2).
  kWords,
  // The same, for LLaMA 3 style regexes, where `\s*[\r\n]+` comes first:
  // a whitespace match ending in \r or \n is that one, not a run.
  kWordsNewlineRuns,
};

// The pre-tokenizer families: each is one list of llama.cpp regexes.
enum class Family {
  kDefault,  // llama.cpp's fallback for "" and "default"
  kGpt2,
  kDigits,  // GPT-2 after splitting every \p{N} (StarCoder, SmolLM, ...)
  kFalcon,
  kLlama3,
  kQwen2,
  kDeepseekLlm,
  kDeepseekCoder,
};

struct NameRow {
  const char* name;
  Family family;
  bool ignore_merges;
  bool add_bos = false;  // llama.cpp's default when the file does not say
};

// `tokenizer.ggml.pre` values, as llama.cpp (llama-vocab.cpp) maps them.
// Each family is checked against llama.cpp's test vectors or llama.cpp
// itself (tests/tokenizer_vocab_test.cc); names llama.cpp maps to the same
// regexes are aliases. `gpt2` is not written by llama.cpp but was accepted
// here before and means the same regex.
constexpr NameRow kNames[] = {
    {"default", Family::kDefault, false},
    {"gpt-2", Family::kGpt2, false},
    {"gpt2", Family::kGpt2, false},
    {"phi-2", Family::kGpt2, false},
    {"mpt", Family::kGpt2, false},
    {"olmo", Family::kGpt2, false},
    {"jais", Family::kGpt2, false},
    {"starcoder", Family::kDigits, false},
    {"refact", Family::kDigits, false},
    {"command-r", Family::kDigits, false},
    {"smollm", Family::kDigits, false},
    {"codeshell", Family::kDigits, false},
    {"exaone", Family::kDigits, false},
    {"minerva-7b", Family::kDigits, false},
    {"falcon", Family::kFalcon, false},
    {"llama3", Family::kLlama3, true, true},
    {"llama-v3", Family::kLlama3, true, true},
    {"llama-bpe", Family::kLlama3, true, true},
    {"falcon3", Family::kLlama3, true, true},
    {"falcon-h1", Family::kLlama3, true, true},
    {"pixtral", Family::kLlama3, true, true},
    {"midm-2.0", Family::kLlama3, true, true},
    {"lfm2", Family::kLlama3, true, true},
    {"dbrx", Family::kLlama3, false},
    {"smaug-bpe", Family::kLlama3, false},
    {"qwen2", Family::kQwen2, false},
    {"stablelm2", Family::kQwen2, false},
    {"megrez", Family::kQwen2, false},
    {"deepseek-llm", Family::kDeepseekLlm, false},
    {"deepseek-coder", Family::kDeepseekCoder, false},
};

std::string Ws() { return absl::StrCat("[", kWs, "]"); }

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::string Gpt2Words() {
  return absl::StrCat("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^", kWs,
                      "\\p{L}\\p{N}]+|", Ws(), "+");
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// Qwen2's is the same with \p{N} instead of \p{N}{1,3}.
std::string Llama3Words(absl::string_view numbers) {
  return absl::StrCat(
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|"
      "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|",
      numbers, "| ?[^", kWs, "\\p{L}\\p{N}]+[\\r\\n]*|", Ws(), "*[\\r\\n]+|",
      Ws(), "+");
}

// The DeepSeek regexes name no Unicode category, so llama.cpp runs them
// (std::wregex) on the text with every non-ASCII White_Space character
// replaced by \v: a whitespace character listed in one of their classes
// never matches as itself. The classes here leave those characters out.
//
// [一-龥ࠀ-一가-퟿]+: CJK ideographs (as far as U+9FA5), U+0800..U+4E00
// without its whitespace (U+1680, U+2000..U+200A, U+2028, U+2029, U+202F,
// U+205F, U+3000) and Hangul syllables, the ranges of both DeepSeek
// pre-tokenizers.
constexpr char kDeepseekCjk[] =
    "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{167F}\\x{1681}-\\x{1FFF}"
    "\\x{200B}-\\x{2027}\\x{202A}-\\x{202E}\\x{2030}-\\x{205E}"
    "\\x{2060}-\\x{2FFF}\\x{3001}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+";

// DeepSeek LLM's letters: \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+, the cased letters of
// the Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee, Glagolitic,
// Coptic, Deseret, Osage, Old Hungarian, Warang Citi and Adlam scripts.
std::string DeepseekLlmLetters() {
  return absl::StrCat(
      Ws(),
      "?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}"
      "\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}"
      "\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}"
      "\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}"
      "\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}"
      "\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"
      "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}"
      "\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}"
      "\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}"
      "\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}"
      "\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}"
      "\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}"
      "\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}"
      "\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}"
      "\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"
      "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"
      "\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}"
      "\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}"
      "\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"
      "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}"
      "\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}"
      "\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
      "\\x{1E900}-\\x{1E943}]+");
}

// The regex steps of a family, in llama.cpp's order.
std::vector<std::pair<StepKind, std::string>> FamilySteps(Family f) {
  using K = StepKind;
  switch (f) {
    case Family::kDefault:
      return {{K::kMatches, "[\\p{P}\\$\\+<=>\\^~\\|]+"},
              {K::kWords, Gpt2Words()},
              {K::kMatches, "\\p{N}+"},
              {K::kMatches, "[0-9][0-9][0-9]"}};
    case Family::kGpt2:
      return {{K::kWords, Gpt2Words()}};
    case Family::kDigits:
      return {{K::kMatches, "\\p{N}"}, {K::kWords, Gpt2Words()}};
    case Family::kFalcon:
      return {{K::kMatches, "[\\p{P}\\$\\+<=>\\^~\\|`]+"},
              {K::kWords, Gpt2Words()},
              {K::kMatches, "[0-9][0-9][0-9]"}};
    case Family::kLlama3:
      return {{K::kWordsNewlineRuns, Llama3Words("\\p{N}{1,3}")}};
    case Family::kQwen2:
      return {{K::kWordsNewlineRuns, Llama3Words("\\p{N}")}};
    case Family::kDeepseekLlm:
      return {{K::kMatches, "[\\r\\n]"},
              {K::kMatches, DeepseekLlmLetters()},
              // \s?[!-/:-~！-／：-～‘-‟　-。]+ without U+3000 (see above).
              {K::kMatches, absl::StrCat(Ws(),
                                         "?[!-/:-~\\x{FF01}-\\x{FF0F}"
                                         "\\x{FF1A}-\\x{FF5E}\\x{2018}-"
                                         "\\x{201F}\\x{3001}-\\x{3002}]+")},
              {K::kMatches, absl::StrCat(Ws(), "+$")},
              {K::kMatches, kDeepseekCjk},
              {K::kMatches, "\\p{N}+"}};
    case Family::kDeepseekCoder:
      return {{K::kMatches, "[\\r\\n]"},
              {K::kMatches, absl::StrCat(Ws(), "?\\p{L}+")},
              {K::kMatches, absl::StrCat(Ws(), "?\\p{P}+")},
              {K::kMatches, kDeepseekCjk},
              {K::kMatches, "\\p{N}"}};
  }
  return {};
}

// Replaces \p{L}, \p{N} and \p{P} by llama.cpp's Unicode 15.1 classes
// (unicode_classes.h): bracketed outside a class, bare inside one. The
// table's patterns have no nested or escaped brackets.
std::string ExpandCategories(absl::string_view pattern) {
  std::string out;
  bool inside = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 4 < pattern.size() && pattern[i + 1] == 'p' &&
        pattern[i + 2] == '{' && pattern[i + 4] == '}') {
      const char* body = nullptr;
      switch (pattern[i + 3]) {
        case 'L':
          body = kUnicodeLetters;
          break;
        case 'N':
          body = kUnicodeNumbers;
          break;
        case 'P':
          body = kUnicodePunctuation;
          break;
      }
      if (body != nullptr) {
        absl::StrAppend(&out, inside ? "" : "[", body, inside ? "" : "]");
        i += 4;
        continue;
      }
    }
    if (c == '\\' && i + 1 < pattern.size()) {  // an escape: copy both
      out += c;
      out += pattern[++i];
      continue;
    }
    if (c == '[') inside = true;
    if (c == ']') inside = false;
    out += c;
  }
  return out;
}

void SplitMatches(const re2::RE2& re, absl::string_view chunk,
                  std::vector<absl::string_view>* out) {
  const re2::StringPiece subject(chunk.data(), chunk.size());
  re2::StringPiece m;
  size_t pos = 0;
  while (pos < chunk.size() &&
         re.Match(subject, pos, chunk.size(), RE2::UNANCHORED, &m, 1) &&
         !m.empty()) {  // no table regex matches empty; never loop on one
    const size_t at = size_t(m.data() - chunk.data());
    if (at > pos) out->push_back(chunk.substr(pos, at - pos));
    out->push_back(chunk.substr(at, m.size()));
    pos = at + m.size();
  }
  if (pos < chunk.size()) out->push_back(chunk.substr(pos));
}

void SplitWords(const re2::RE2& re, bool newline_runs, absl::string_view chunk,
                std::vector<absl::string_view>* out) {
  const re2::StringPiece subject(chunk.data(), chunk.size());
  re2::StringPiece m;
  size_t pos = 0;
  while (pos < chunk.size()) {
    if (!re.Match(subject, pos, chunk.size(), RE2::ANCHOR_START, &m, 1) ||
        m.empty()) {
      int len;
      CodePointAt(chunk, pos, &len);  // no alternative: one character
      out->push_back(chunk.substr(pos, len));
      pos += len;
      continue;
    }
    size_t len = m.size();
    if (pos + len < chunk.size() &&
        !(newline_runs &&
          (m[m.size() - 1] == '\r' || m[m.size() - 1] == '\n'))) {
      // A match of whitespace only is the `\s+(?!\S)|\s+` alternative:
      // a run of >= 2 characters followed by a non-space leaves its last
      // character to the next piece.
      const absl::string_view run(m.data(), m.size());
      size_t chars = 0, last = 0;
      bool all_ws = true;
      for (size_t i = 0; i < len && all_ws;) {
        int l;
        all_ws = IsWs(CodePointAt(run, i, &l));
        last = i;
        i += l;
        ++chars;
      }
      int l;
      if (all_ws && chars > 1 && !IsWs(CodePointAt(chunk, pos + len, &l))) {
        len = last;
      }
    }
    out->push_back(chunk.substr(pos, len));
    pos += len;
  }
}

}  // namespace

struct PreTokenizer::Step {
  StepKind kind;
  std::unique_ptr<re2::RE2> re;
};

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;

std::string PreTokenizer::SupportedNames() {
  std::vector<std::string> names;
  for (const NameRow& row : kNames) names.push_back(row.name);
  return absl::StrJoin(names, ", ");
}

bool PreTokenizer::DefaultAddBos(absl::string_view name) {
  for (const NameRow& row : kNames) {
    if (name == row.name) return row.add_bos;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(
    absl::string_view name) {
  // A missing type is llama.cpp's "default" (it warns that generation
  // quality may suffer; so does the file's converter).
  const absl::string_view key = name.empty() ? "default" : name;
  const NameRow* row =
      std::find_if(std::begin(kNames), std::end(kNames),
                   [&](const NameRow& r) { return key == r.name; });
  if (row == std::end(kNames)) {
    return absl::UnimplementedError(
        absl::StrCat("tokenizer: pre-tokenizer 'tokenizer.ggml.pre' = '", name,
                     "' is not supported; supported: ", SupportedNames()));
  }
  auto p = std::unique_ptr<PreTokenizer>(new PreTokenizer());
  p->ignore_merges_ = row->ignore_merges;
  for (auto& [kind, pattern] : FamilySteps(row->family)) {
    auto re = std::make_unique<re2::RE2>(ExpandCategories(pattern));
    if (!re->ok()) {
      return absl::InternalError(absl::StrCat("tokenizer: pre-tokenizer '", key,
                                              "': bad regex /", pattern,
                                              "/: ", re->error()));
    }
    p->steps_.push_back({kind, std::move(re)});
  }
  return p;
}

std::vector<absl::string_view> PreTokenizer::Split(
    absl::string_view text) const {
  std::vector<absl::string_view> pieces, next;
  if (!text.empty()) pieces.push_back(text);
  for (const Step& step : steps_) {
    next.clear();
    for (absl::string_view piece : pieces) {
      if (step.kind == StepKind::kMatches) {
        SplitMatches(*step.re, piece, &next);
      } else {
        SplitWords(*step.re, step.kind == StepKind::kWordsNewlineRuns, piece,
                   &next);
      }
    }
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace spikeserve
