#include "runtime/text/jinja_parser.h"

#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/text/jinja_parser_internal.h"

namespace spikeserve::jinja {
namespace internal {

// Parses statements until a block tag whose name is in `end_names`; the
// parser is left on that name token, which is returned in *end. With no
// end names the body runs to the end of the template.
absl::Status Parser::ParseBody(
    std::initializer_list<absl::string_view> end_names, Body* body,
    std::string* end) {
  DepthGuard guard(this);
  if (guard.exceeded()) return ErrorAt(Peek(), "statements nested too deeply");
  while (true) {
    const Token& t = Peek();
    switch (t.type) {
      case TokenType::kText: {
        StmtPtr s;
        Make(&s, Stmt::Kind::kText, t)->text = Next().value;
        body->push_back(std::move(s));
        break;
      }
      case TokenType::kVarBegin: {
        Next();
        StmtPtr s;
        Make(&s, Stmt::Kind::kOutput, t);
        absl::StatusOr<ExprPtr> e = ParseTuple(true);
        if (!e.ok()) return e.status();
        s->expr = *std::move(e);
        absl::Status st = ExpectType(TokenType::kVarEnd, "'}}'");
        if (!st.ok()) return st;
        body->push_back(std::move(s));
        break;
      }
      case TokenType::kBlockBegin: {
        Next();
        const Token& name = Peek();
        if (name.type != TokenType::kName) return Unexpected("a statement");
        for (absl::string_view e : end_names) {
          if (name.value == e) {
            *end = name.value;
            return absl::OkStatus();
          }
        }
        absl::Status st = ParseStatement(body);
        if (!st.ok()) return st;
        break;
      }
      case TokenType::kEnd:
        if (end_names.size() == 0) return absl::OkStatus();
        return ErrorAt(t, absl::StrCat("unexpected end of template, expected '",
                                       *end_names.begin(), "'"));
      default:
        return ErrorAt(t, absl::StrCat("unexpected ", Describe(t)));
    }
  }
}

absl::Status Parser::ParseStatement(Body* body) {
  const Token& t = Peek();
  const std::string name = t.value;
  StmtPtr s;
  absl::Status st;
  if (name == "if") {
    st = ParseIf(&s);
  } else if (name == "for") {
    st = ParseFor(&s);
  } else if (name == "set") {
    st = ParseSet(&s);
  } else if (name == "macro") {
    st = ParseMacro(&s);
  } else if (name == "filter") {
    st = ParseFilterBlock(&s);
  } else if (name == "break" || name == "continue") {
    if (loop_depth_ == 0) {
      return ErrorAt(t, absl::StrCat("'", name, "' outside of a loop"));
    }
    Next();
    Make(&s, name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue, t);
    st = ExpectBlockEnd();
  } else if (name == "extends" || name == "include" || name == "import" ||
             name == "from" || name == "block" || name == "call" ||
             name == "with" || name == "autoescape") {
    return ErrorAt(t, absl::StrCat("the '", name,
                                   "' tag is not supported in chat templates"));
  } else {
    return ErrorAt(t, absl::StrCat("unknown tag '", name, "'"));
  }
  if (!st.ok()) return st;
  body->push_back(std::move(s));
  return absl::OkStatus();
}

// Consumes `{% end... %}` after ParseBody stopped on it.
absl::Status Parser::FinishEnd() {
  Next();
  return ExpectBlockEnd();
}

absl::Status Parser::ParseIf(StmtPtr* out) {
  Stmt* s = Make(out, Stmt::Kind::kIf, Next());
  while (true) {
    absl::StatusOr<ExprPtr> cond = ParseTuple(false);
    if (!cond.ok()) return cond.status();
    absl::Status st = ExpectBlockEnd();
    if (!st.ok()) return st;
    Body body;
    std::string end;
    st = ParseBody({"elif", "else", "endif"}, &body, &end);
    if (!st.ok()) return st;
    s->branches.emplace_back(*std::move(cond), std::move(body));
    if (end == "elif") {
      Next();
      continue;
    }
    if (end == "else") {
      Next();
      st = ExpectBlockEnd();
      if (!st.ok()) return st;
      st = ParseBody({"endif"}, &s->else_body, &end);
      if (!st.ok()) return st;
    }
    return FinishEnd();
  }
}

absl::Status Parser::ParseFor(StmtPtr* out) {
  Stmt* s = Make(out, Stmt::Kind::kFor, Next());
  // Targets: a name or names separated by commas, optionally in parens.
  const bool paren = IsOp("(");
  if (paren) Next();
  while (true) {
    absl::StatusOr<std::string> name = ExpectName();
    if (!name.ok()) return name.status();
    s->targets.push_back(*name);
    if (!IsOp(",")) break;
    Next();
  }
  if (paren) {
    absl::Status st = ExpectOp(")");
    if (!st.ok()) return st;
  }
  if (!IsName("in")) return Unexpected("'in'");
  Next();
  absl::StatusOr<ExprPtr> iter = ParseTuple(false, {"recursive"});
  if (!iter.ok()) return iter.status();
  s->expr = *std::move(iter);
  if (IsName("if")) {
    Next();
    absl::StatusOr<ExprPtr> cond = ParseExpression();
    if (!cond.ok()) return cond.status();
    s->cond = *std::move(cond);
  }
  if (IsName("recursive")) {
    return ErrorAt(Peek(), "recursive loops are not supported");
  }
  absl::Status st = ExpectBlockEnd();
  if (!st.ok()) return st;
  std::string end;
  ++loop_depth_;
  st = ParseBody({"endfor", "else"}, &s->body, &end);
  --loop_depth_;
  if (!st.ok()) return st;
  if (end == "else") {
    Next();
    st = ExpectBlockEnd();
    if (!st.ok()) return st;
    // The else block is outside the loop (loop controls there belong to
    // an enclosing loop).
    st = ParseBody({"endfor"}, &s->else_body, &end);
    if (!st.ok()) return st;
  }
  return FinishEnd();
}

absl::Status Parser::ParseSet(StmtPtr* out) {
  const Token& at = Next();
  absl::StatusOr<std::string> name = ExpectName();
  if (!name.ok()) return name.status();
  std::vector<std::string> targets = {*name};
  std::string attribute;
  if (IsOp(".")) {
    Next();
    absl::StatusOr<std::string> attr = ExpectName();
    if (!attr.ok()) return attr.status();
    attribute = *attr;
  } else {
    while (IsOp(",")) {
      Next();
      absl::StatusOr<std::string> more = ExpectName();
      if (!more.ok()) return more.status();
      targets.push_back(*more);
    }
  }
  if (IsOp("=")) {
    Next();
    Stmt* s = Make(out, Stmt::Kind::kSet, at);
    s->targets = std::move(targets);
    s->attribute = std::move(attribute);
    absl::StatusOr<ExprPtr> value = ParseTuple(true);
    if (!value.ok()) return value.status();
    s->expr = *std::move(value);
    return ExpectBlockEnd();
  }
  if (targets.size() != 1) return Unexpected("'='");
  Stmt* s = Make(out, Stmt::Kind::kSetBlock, at);
  s->targets = std::move(targets);
  s->attribute = std::move(attribute);
  if (IsOp("|")) {
    absl::StatusOr<ExprPtr> filter = ParseFilterChain(nullptr);
    if (!filter.ok()) return filter.status();
    s->expr = *std::move(filter);
  }
  absl::Status st = ExpectBlockEnd();
  if (!st.ok()) return st;
  std::string end;
  st = ParseBody({"endset"}, &s->body, &end);
  if (!st.ok()) return st;
  return FinishEnd();
}

absl::Status Parser::ParseMacro(StmtPtr* out) {
  Stmt* s = Make(out, Stmt::Kind::kMacro, Next());
  absl::StatusOr<std::string> name = ExpectName();
  if (!name.ok()) return name.status();
  s->text = *name;
  absl::Status st = ExpectOp("(");
  if (!st.ok()) return st;
  while (!IsOp(")")) {
    if (!s->targets.empty()) {
      st = ExpectOp(",");
      if (!st.ok()) return st;
      if (IsOp(")")) break;
    }
    absl::StatusOr<std::string> param = ExpectName();
    if (!param.ok()) return param.status();
    s->targets.push_back(*param);
    ExprPtr def;
    if (IsOp("=")) {
      Next();
      absl::StatusOr<ExprPtr> e = ParseExpression();
      if (!e.ok()) return e.status();
      def = *std::move(e);
    } else if (!s->defaults.empty() && s->defaults.back() != nullptr) {
      return ErrorAt(Peek(), "non-default argument follows default argument");
    }
    s->defaults.push_back(std::move(def));
  }
  Next();
  st = ExpectBlockEnd();
  if (!st.ok()) return st;
  // Loop controls inside a macro body refer to loops inside the macro.
  const int saved_loops = loop_depth_;
  loop_depth_ = 0;
  std::string end;
  st = ParseBody({"endmacro"}, &s->body, &end);
  loop_depth_ = saved_loops;
  if (!st.ok()) return st;
  Next();
  if (IsName(s->text)) Next();  // {% endmacro name %}
  return ExpectBlockEnd();
}

absl::Status Parser::ParseFilterBlock(StmtPtr* out) {
  Stmt* s = Make(out, Stmt::Kind::kFilterBlock, Next());
  absl::StatusOr<ExprPtr> filter = ParseFilterChain(nullptr, /*first=*/true);
  if (!filter.ok()) return filter.status();
  s->expr = *std::move(filter);
  absl::Status st = ExpectBlockEnd();
  if (!st.ok()) return st;
  std::string end;
  st = ParseBody({"endfilter"}, &s->body, &end);
  if (!st.ok()) return st;
  return FinishEnd();
}

}  // namespace internal

absl::StatusOr<Body> Parse(const std::vector<Token>& tokens) {
  return internal::Parser(tokens).ParseTemplate();
}

}  // namespace spikeserve::jinja
