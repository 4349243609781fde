// The parser class behind jinja_parser.h, shared by its two source files:
// jinja_parser.cc (statements) and jinja_parser_expr.cc (expressions).
// Internal to the Jinja interpreter.
#ifndef SPIKESERVE_RUNTIME_TEXT_JINJA_PARSER_INTERNAL_H_
#define SPIKESERVE_RUNTIME_TEXT_JINJA_PARSER_INTERNAL_H_

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "runtime/text/jinja_ast.h"
#include "runtime/text/jinja_lexer.h"
#include "runtime/text/jinja_parser.h"

namespace spikeserve::jinja::internal {

// Statement and expression parser; one instance per template. Mirrors the
// structure of jinja2's parser.py so that precedence matches exactly:
// condexpr < or < and < not < compare < +,- < ~ < *,/,//,% < ** < unary
// (with postfix, filters and tests binding tightest).
class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : tokens_(tokens) {}

  absl::StatusOr<Body> ParseTemplate() {
    Body body;
    std::string end;
    absl::Status s = ParseBody({}, &body, &end);
    if (!s.ok()) return s;
    return body;
  }

 private:
  // Tracks recursion depth of the parser; fails beyond kMaxParseDepth.
  class DepthGuard {
   public:
    explicit DepthGuard(Parser* p) : p_(p) { ++p_->depth_; }
    ~DepthGuard() { --p_->depth_; }
    bool exceeded() const { return p_->depth_ > kMaxParseDepth; }

   private:
    Parser* p_;
  };

  const Token& Peek(size_t ahead = 0) const {
    const size_t i = std::min(pos_ + ahead, tokens_.size() - 1);
    return tokens_[i];
  }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool IsOp(absl::string_view op, size_t ahead = 0) const {
    const Token& t = Peek(ahead);
    return t.type == TokenType::kOperator && t.value == op;
  }
  bool IsName(absl::string_view name, size_t ahead = 0) const {
    const Token& t = Peek(ahead);
    return t.type == TokenType::kName && t.value == name;
  }

  static std::string Describe(const Token& t) {
    switch (t.type) {
      case TokenType::kText:
        return "template text";
      case TokenType::kVarBegin:
        return "'{{'";
      case TokenType::kVarEnd:
        return "'}}'";
      case TokenType::kBlockBegin:
        return "'{%'";
      case TokenType::kBlockEnd:
        return "'%}'";
      case TokenType::kEnd:
        return "end of template";
      case TokenType::kString:
        return "string literal";
      default:
        return absl::StrCat("'", t.value, "'");
    }
  }

  absl::Status ErrorAt(const Token& t, absl::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", t.line, ", column ", t.column, ": ", message));
  }
  absl::Status Unexpected(absl::string_view expected) const {
    return ErrorAt(Peek(), absl::StrCat("expected ", expected, ", got ",
                                        Describe(Peek())));
  }
  absl::Status ExpectOp(absl::string_view op) {
    if (!IsOp(op)) return Unexpected(absl::StrCat("'", op, "'"));
    Next();
    return absl::OkStatus();
  }
  absl::Status ExpectType(TokenType type, absl::string_view what) {
    if (Peek().type != type) return Unexpected(what);
    Next();
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() {
    return ExpectType(TokenType::kBlockEnd, "end of statement '%}'");
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Peek().type != TokenType::kName) return Unexpected("a name");
    return Next().value;
  }

  template <typename T>
  static T* Make(std::unique_ptr<T>* out, typename T::Kind kind,
                 const Token& at) {
    *out = std::make_unique<T>();
    (*out)->kind = kind;
    (*out)->line = at.line;
    (*out)->column = at.column;
    return out->get();
  }

  // ---- Statements (jinja_parser.cc) ----
  // Parses statements until a block tag whose name is in `end_names`; the
  // parser is left on that name token, which is returned in *end. With no
  // end names the body runs to the end of the template.
  absl::Status ParseBody(std::initializer_list<absl::string_view> end_names,
                         Body* body, std::string* end);
  absl::Status ParseStatement(Body* body);
  // Consumes `{% end... %}` after ParseBody stopped on it.
  absl::Status FinishEnd();
  absl::Status ParseIf(StmtPtr* out);
  absl::Status ParseFor(StmtPtr* out);
  absl::Status ParseSet(StmtPtr* out);
  absl::Status ParseMacro(StmtPtr* out);
  absl::Status ParseFilterBlock(StmtPtr* out);

  // ---- Expressions (jinja_parser_expr.cc) ----
  absl::StatusOr<ExprPtr> ParseExpression() { return ParseCondExpr(); }
  bool IsTupleEnd(std::initializer_list<absl::string_view> extra_end) const;
  // jinja2's parse_tuple: `a, b` without parentheses is a tuple.
  absl::StatusOr<ExprPtr> ParseTuple(
      bool with_condexpr,
      std::initializer_list<absl::string_view> extra_end = {},
      bool explicit_parens = false);
  absl::StatusOr<ExprPtr> ParseCondExpr();
  ExprPtr MakeBinary(const Token& at, std::string op, ExprPtr a, ExprPtr b);
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  // One level of left-associative binary operators.
  template <typename Next_>
  absl::StatusOr<ExprPtr> ParseBinaryLevel(
      std::initializer_list<absl::string_view> ops, Next_ next);
  absl::StatusOr<ExprPtr> ParseMath1();
  absl::StatusOr<ExprPtr> ParseConcat();
  absl::StatusOr<ExprPtr> ParseMath2();
  absl::StatusOr<ExprPtr> ParsePow();
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParseList();
  absl::StatusOr<ExprPtr> ParseDict();
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr obj, const Token& at);
  // Arguments of a call, filter or test: `(a, b, key=c)`.
  absl::Status ParseArgs(Expr* n);
  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  // `|f(args)|g...` applied to `input` (null in filter blocks). With
  // `first` the leading "|" is absent ({% filter f %}).
  absl::StatusOr<ExprPtr> ParseFilterChain(ExprPtr input, bool first = false);
  absl::StatusOr<ExprPtr> ParseTest(ExprPtr operand);

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace spikeserve::jinja::internal

#endif  // SPIKESERVE_RUNTIME_TEXT_JINJA_PARSER_INTERNAL_H_
