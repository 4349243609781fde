#include "runtime/text/jinja_lexer.h"

#include <algorithm>
#include <cctype>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/text/utf8.h"

namespace spikeserve::jinja {
namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t'; }
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
         c == '\f';
}
bool IsNameStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

// jinja2 splits the source on \r\n, \r and \n, drops a last empty line
// (keep_trailing_newline=False) and joins with "\n".
std::string NormalizeNewlines(absl::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(std::string source, const LexerOptions& options)
      : src_(std::move(source)), options_(options) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    size_t pos = 0;
    // True at the start of the template and after a tag whose end consumed
    // a newline: lstrip_blocks then strips blanks before the next tag even
    // though the text between holds no newline (jinja2's line_starting).
    bool line_starting = true;
    while (pos < src_.size()) {
      const size_t start = FindTagStart(pos);
      if (start == std::string::npos) {
        Emit(TokenType::kText, src_.substr(pos), pos);
        break;
      }
      const char kind = src_[start + 1];
      size_t p = start + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) {
        sign = src_[p++];
      }
      std::string text = src_.substr(pos, start - pos);
      if (sign == '-') {
        while (!text.empty() && IsSpace(text.back())) text.pop_back();
      } else if (sign != '+' && options_.lstrip_blocks && kind != '{') {
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if (l_pos > 0 || line_starting) {
          if (std::all_of(text.begin() + l_pos, text.end(), IsBlank)) {
            text.resize(l_pos);
          }
        }
      }
      Emit(TokenType::kText, std::move(text), pos);

      absl::StatusOr<size_t> end;
      if (kind == '#') {
        end = SkipComment(start, p);
      } else if (kind == '%' && IsRawBegin(p)) {
        end = LexRaw(start, p);
      } else {
        end = LexTag(kind == '%', start, p);
      }
      if (!end.ok()) return end.status();
      pos = *end;
      line_starting = pos > 0 && src_[pos - 1] == '\n';
    }
    Emit(TokenType::kEnd, "", src_.size());
    return std::move(tokens_);
  }

 private:
  // Whether the source continues with `text` at p.
  bool At(size_t p, absl::string_view text) const {
    return p <= src_.size() &&
           absl::string_view(src_).substr(p, text.size()) == text;
  }

  size_t FindTagStart(size_t pos) const {
    while (true) {
      pos = src_.find('{', pos);
      if (pos == std::string::npos || pos + 1 >= src_.size()) {
        return std::string::npos;
      }
      const char c = src_[pos + 1];
      if (c == '{' || c == '%' || c == '#') return pos;
      ++pos;
    }
  }

  void Emit(TokenType type, std::string value, size_t offset) {
    if (type == TokenType::kText && value.empty()) return;
    Token t{type, std::move(value), 1, 1};
    Locate(offset, &t.line, &t.column);
    tokens_.push_back(std::move(t));
  }

  void Locate(size_t offset, int* line, int* column) const {
    const auto it =
        std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    const size_t index = size_t(it - line_starts_.begin()) - 1;
    *line = int(index) + 1;
    *column = int(offset - line_starts_[index]) + 1;
  }

  absl::Status Error(size_t offset, absl::string_view message) const {
    int line, column;
    Locate(offset, &line, &column);
    return absl::InvalidArgumentError(
        absl::StrCat("line ", line, ", column ", column, ": ", message));
  }

  // A block tag's end: "+%}" keeps what follows, "-%}" strips all
  // whitespace after it, "%}" drops one newline with trim_blocks.
  // Returns the position after the end, or npos when there is none at p.
  size_t MatchBlockEnd(size_t p) const {
    if (At(p, "+%}")) return p + 3;
    if (At(p, "-%}")) {
      p += 3;
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      return p;
    }
    if (At(p, "%}")) {
      p += 2;
      if (options_.trim_blocks && p < src_.size() && src_[p] == '\n') ++p;
      return p;
    }
    return std::string::npos;
  }

  // "-}}" strips the whitespace after it; trim_blocks does not apply.
  size_t MatchVariableEnd(size_t p) const {
    if (At(p, "-}}")) {
      p += 3;
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      return p;
    }
    if (At(p, "}}")) return p + 2;
    return std::string::npos;
  }

  absl::StatusOr<size_t> SkipComment(size_t start, size_t p) {
    // jinja2 stops lexing when "{#" ends the source: no error.
    if (p >= src_.size()) return p;
    for (; p < src_.size(); ++p) {
      if (At(p, "+#}")) return p + 3;
      if (At(p, "-#}")) {
        p += 3;
        while (p < src_.size() && IsSpace(src_[p])) ++p;
        return p;
      }
      if (At(p, "#}")) {
        p += 2;
        if (options_.trim_blocks && p < src_.size() && src_[p] == '\n') ++p;
        return p;
      }
    }
    return Error(start, "missing end of comment tag");
  }

  bool IsRawBegin(size_t p) const {
    while (p < src_.size() && IsSpace(src_[p])) ++p;
    if (!At(p, "raw")) return false;
    p += 3;
    if (p < src_.size() && IsNameChar(src_[p])) return false;
    while (p < src_.size() && IsSpace(src_[p])) ++p;
    return At(p, "%}") || At(p, "-%}");
  }

  // {% raw %}...{% endraw %}: the text between is literal.
  absl::StatusOr<size_t> LexRaw(size_t start, size_t p) {
    p = src_.find("raw", p) + 3;
    while (IsSpace(src_[p])) ++p;
    if (src_[p] == '-') {
      p += 3;
      while (p < src_.size() && IsSpace(src_[p])) ++p;
    } else {
      p += 2;
    }
    const size_t body = p;
    for (size_t q = FindTagStart(p); q != std::string::npos;
         q = FindTagStart(q + 1)) {
      if (src_[q + 1] != '%') continue;
      size_t r = q + 2;
      char sign = 0;
      if (r < src_.size() && (src_[r] == '-' || src_[r] == '+')) {
        sign = src_[r++];
      }
      while (r < src_.size() && IsSpace(src_[r])) ++r;
      if (!At(r, "endraw")) continue;
      r += 6;
      while (r < src_.size() && IsSpace(src_[r])) ++r;
      const size_t end = MatchBlockEnd(r);
      if (end == std::string::npos) continue;
      std::string text = src_.substr(body, q - body);
      if (sign == '-') {
        while (!text.empty() && IsSpace(text.back())) text.pop_back();
      }
      Emit(TokenType::kText, std::move(text), body);
      return end;
    }
    return Error(start, "missing end of raw directive");
  }

  absl::StatusOr<size_t> LexTag(bool block, size_t start, size_t p) {
    Emit(block ? TokenType::kBlockBegin : TokenType::kVarBegin, "", start);
    // Brackets opened inside the tag: while any is open, "}}" and "%}" are
    // operators, not the end of the tag (as in jinja2).
    std::string open;
    while (true) {
      if (open.empty()) {
        const size_t end = block ? MatchBlockEnd(p) : MatchVariableEnd(p);
        if (end != std::string::npos) {
          Emit(block ? TokenType::kBlockEnd : TokenType::kVarEnd, "", p);
          return end;
        }
      }
      if (p >= src_.size()) {
        return Error(start, block ? "unexpected end of template: missing '%}'"
                                  : "unexpected end of template: missing '}}'");
      }
      const char c = src_[p];
      if (IsSpace(c)) {
        ++p;
        continue;
      }
      if (IsNameStart(c)) {
        size_t q = p;
        while (q < src_.size() && IsNameChar(src_[q])) ++q;
        Emit(TokenType::kName, src_.substr(p, q - p), p);
        p = q;
        continue;
      }
      if (std::isdigit(static_cast<unsigned char>(c))) {
        absl::StatusOr<size_t> q = LexNumber(p);
        if (!q.ok()) return q.status();
        p = *q;
        continue;
      }
      if (c == '\'' || c == '"') {
        absl::StatusOr<size_t> q = LexString(p);
        if (!q.ok()) return q.status();
        p = *q;
        continue;
      }
      static constexpr absl::string_view kTwo[] = {
          "//", "**", "==", "!=", "<=", ">="};
      bool matched = false;
      for (absl::string_view op : kTwo) {
        if (At(p, op)) {
          Emit(TokenType::kOperator, std::string(op), p);
          p += 2;
          matched = true;
          break;
        }
      }
      if (matched) continue;
      if (absl::string_view("+-*/%~<>=.,:|()[]{};").find(c) ==
          absl::string_view::npos) {
        return Error(
            p, absl::StrCat("unexpected character '", std::string(1, c), "'"));
      }
      if (c == '(' || c == '[' || c == '{') {
        open.push_back(c == '(' ? ')' : (c == '[' ? ']' : '}'));
      } else if (c == ')' || c == ']' || c == '}') {
        if (open.empty() || open.back() != c) {
          return Error(p, absl::StrCat("unexpected '", std::string(1, c), "'"));
        }
        open.pop_back();
      }
      Emit(TokenType::kOperator, std::string(1, c), p);
      ++p;
    }
  }

  // (\d+_)*\d+ with an optional fraction and exponent.
  absl::StatusOr<size_t> LexNumber(size_t p) {
    const size_t start = p;
    auto digits = [&](size_t q) {
      const size_t from = q;
      while (q < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[q])) ||
              (src_[q] == '_' && q > from && q + 1 < src_.size() &&
               std::isdigit(static_cast<unsigned char>(src_[q + 1]))))) {
        ++q;
      }
      return q;
    };
    p = digits(p);
    bool is_float = false;
    if (p + 1 < src_.size() && src_[p] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[p + 1]))) {
      p = digits(p + 1);
      is_float = true;
    }
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() &&
          std::isdigit(static_cast<unsigned char>(src_[q]))) {
        p = digits(q);
        is_float = true;
      }
    }
    std::string text = src_.substr(start, p - start);
    text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
    Emit(is_float ? TokenType::kFloat : TokenType::kInt, std::move(text),
         start);
    return p;
  }

  // A quoted string; escapes are decoded as Python's "unicode-escape".
  absl::StatusOr<size_t> LexString(size_t p) {
    const size_t start = p;
    const char quote = src_[p++];
    std::string value;
    while (true) {
      if (p >= src_.size()) return Error(start, "unterminated string");
      const char c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        value.push_back(c);
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) return Error(start, "unterminated string");
      const char e = src_[p + 1];
      p += 2;
      auto hex = [&](int n) -> absl::StatusOr<uint32_t> {
        uint32_t cp = 0;
        for (int i = 0; i < n; ++i, ++p) {
          if (p >= src_.size() ||
              !std::isxdigit(static_cast<unsigned char>(src_[p]))) {
            return Error(start, "invalid escape in string");
          }
          const char h = src_[p];
          cp = cp * 16 + uint32_t(std::isdigit(static_cast<unsigned char>(h))
                                      ? h - '0'
                                      : std::tolower(h) - 'a' + 10);
        }
        return cp;
      };
      switch (e) {
        case '\n':
          break;  // line continuation
        case '\\':
        case '\'':
        case '"':
          value.push_back(e);
          break;
        case 'a':
          value.push_back('\a');
          break;
        case 'b':
          value.push_back('\b');
          break;
        case 'f':
          value.push_back('\f');
          break;
        case 'n':
          value.push_back('\n');
          break;
        case 'r':
          value.push_back('\r');
          break;
        case 't':
          value.push_back('\t');
          break;
        case 'v':
          value.push_back('\v');
          break;
        case 'x':
        case 'u':
        case 'U': {
          absl::StatusOr<uint32_t> cp = hex(e == 'x' ? 2 : (e == 'u' ? 4 : 8));
          if (!cp.ok()) return cp.status();
          if (*cp > 0x10FFFF) return Error(start, "invalid escape in string");
          AppendUtf8(*cp, &value);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = uint32_t(e - '0');
            for (int i = 0;
                 i < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7';
                 ++i, ++p) {
              cp = cp * 8 + uint32_t(src_[p] - '0');
            }
            AppendUtf8(cp, &value);
          } else {
            // Unknown escapes stay as written, as in Python.
            value.push_back('\\');
            value.push_back(e);
          }
      }
    }
    Emit(TokenType::kString, std::move(value), start);
    return p + 1;
  }

  const std::string src_;
  const LexerOptions options_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view source,
                                            const LexerOptions& options) {
  return Lexer(NormalizeNewlines(source), options).Run();
}

}  // namespace spikeserve::jinja
