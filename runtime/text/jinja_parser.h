// Parser of the Jinja template language: the token stream of jinja_lexer.h
// into the syntax tree of jinja_ast.h, with jinja2's grammar and operator
// precedence. Supported statements: if/elif/else, for (with else, the
// inline "if" filter, loop controls), set (also ns.attr and block set),
// macro, filter blocks, raw; extends/include/import/block and call blocks
// are refused (chat templates are single, self-contained files).
#ifndef SPIKESERVE_RUNTIME_TEXT_JINJA_PARSER_H_
#define SPIKESERVE_RUNTIME_TEXT_JINJA_PARSER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "runtime/text/jinja_ast.h"
#include "runtime/text/jinja_lexer.h"

namespace spikeserve::jinja {

// Nesting deeper than this (brackets, statements) fails the parse instead
// of exhausting the stack.
inline constexpr int kMaxParseDepth = 200;

// Errors are InvalidArgument naming the line and column, like
// "line 3, column 12: expected 'endif', got end of template". Filters and
// tests are checked against the built-in tables here, as jinja2 checks them
// when it compiles the template.
absl::StatusOr<Body> Parse(const std::vector<Token>& tokens);

}  // namespace spikeserve::jinja

#endif  // SPIKESERVE_RUNTIME_TEXT_JINJA_PARSER_H_
