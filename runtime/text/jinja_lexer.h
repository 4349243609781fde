// Lexer of the Jinja template language, following jinja2's lexer: text
// between tags, `{{ }}`, `{% %}` and `{# #}` tags with whitespace control
// (`-`/`+` markers, trim_blocks, lstrip_blocks) applied to the text here,
// and the expression tokens inside tags. Like jinja2 it normalizes newlines
// to "\n" and drops one trailing newline of the template.
#ifndef SPIKESERVE_RUNTIME_TEXT_JINJA_LEXER_H_
#define SPIKESERVE_RUNTIME_TEXT_JINJA_LEXER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace spikeserve::jinja {

enum class TokenType {
  kText,        // literal template text (whitespace control applied)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // identifier or keyword
  kString,      // string literal, escapes decoded
  kInt,         // integer literal (digits, underscores removed)
  kFloat,       // float literal (underscores removed)
  kOperator,    // + - * / // % ** ~ == != < <= > >= = . , : | ( ) [ ] { }
  kEnd,         // end of the template
};

struct Token {
  TokenType type;
  std::string value;
  int line = 1;    // 1-based
  int column = 1;  // 1-based, in bytes
};

struct LexerOptions {
  bool trim_blocks = true;    // drop the first newline after a block tag
  bool lstrip_blocks = true;  // strip blanks before a block tag on its line
};

// Errors (unclosed tags, comments or strings, stray characters) are
// InvalidArgument naming the line and column.
absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view source,
                                            const LexerOptions& options);

}  // namespace spikeserve::jinja

#endif  // SPIKESERVE_RUNTIME_TEXT_JINJA_LEXER_H_
