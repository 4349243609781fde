// The expression half of the Jinja parser (jinja_parser_internal.h).
#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "runtime/text/jinja_builtins.h"
#include "runtime/text/jinja_parser_internal.h"

namespace spikeserve::jinja::internal {

bool Parser::IsTupleEnd(
    std::initializer_list<absl::string_view> extra_end) const {
  const Token& t = Peek();
  if (t.type == TokenType::kVarEnd || t.type == TokenType::kBlockEnd ||
      IsOp(")")) {
    return true;
  }
  for (absl::string_view name : extra_end) {
    if (IsName(name)) return true;
  }
  return false;
}

// jinja2's parse_tuple: `a, b` without parentheses is a tuple.
absl::StatusOr<ExprPtr> Parser::ParseTuple(
    bool with_condexpr, std::initializer_list<absl::string_view> extra_end,
    bool explicit_parens) {
  const Token& at = Peek();
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) {
      absl::Status st = ExpectOp(",");
      if (!st.ok()) return st;
    }
    if (IsTupleEnd(extra_end)) break;
    absl::StatusOr<ExprPtr> e = with_condexpr ? ParseExpression() : ParseOr();
    if (!e.ok()) return e.status();
    items.push_back(*std::move(e));
    if (IsOp(",")) {
      is_tuple = true;
    } else {
      break;
    }
  }
  if (!is_tuple) {
    if (items.size() == 1) return std::move(items[0]);
    if (!explicit_parens) return Unexpected("an expression");
  }
  ExprPtr tuple;
  Make(&tuple, Expr::Kind::kTuple, at)->items = std::move(items);
  return tuple;
}

absl::StatusOr<ExprPtr> Parser::ParseCondExpr() {
  DepthGuard guard(this);
  if (guard.exceeded()) return ErrorAt(Peek(), "expression nested too deeply");
  const Token& at = Peek();
  absl::StatusOr<ExprPtr> then = ParseOr();
  if (!then.ok()) return then.status();
  ExprPtr result = *std::move(then);
  while (IsName("if")) {
    Next();
    absl::StatusOr<ExprPtr> cond = ParseOr();
    if (!cond.ok()) return cond.status();
    ExprPtr otherwise;
    if (IsName("else")) {
      Next();
      absl::StatusOr<ExprPtr> e = ParseCondExpr();
      if (!e.ok()) return e.status();
      otherwise = *std::move(e);
    }
    ExprPtr node;
    Expr* n = Make(&node, Expr::Kind::kCondExpr, at);
    n->items.push_back(std::move(result));
    n->items.push_back(*std::move(cond));
    n->items.push_back(std::move(otherwise));
    result = std::move(node);
  }
  return result;
}

ExprPtr Parser::MakeBinary(const Token& at, std::string op, ExprPtr a,
                           ExprPtr b) {
  ExprPtr node;
  Expr* n = Make(&node, Expr::Kind::kBinary, at);
  n->name = std::move(op);
  n->items.push_back(std::move(a));
  n->items.push_back(std::move(b));
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseOr() {
  const Token& at = Peek();
  absl::StatusOr<ExprPtr> left = ParseAnd();
  if (!left.ok()) return left;
  ExprPtr result = *std::move(left);
  while (IsName("or")) {
    Next();
    absl::StatusOr<ExprPtr> right = ParseAnd();
    if (!right.ok()) return right;
    result = MakeBinary(at, "or", std::move(result), *std::move(right));
  }
  return result;
}

absl::StatusOr<ExprPtr> Parser::ParseAnd() {
  const Token& at = Peek();
  absl::StatusOr<ExprPtr> left = ParseNot();
  if (!left.ok()) return left;
  ExprPtr result = *std::move(left);
  while (IsName("and")) {
    Next();
    absl::StatusOr<ExprPtr> right = ParseNot();
    if (!right.ok()) return right;
    result = MakeBinary(at, "and", std::move(result), *std::move(right));
  }
  return result;
}

absl::StatusOr<ExprPtr> Parser::ParseNot() {
  if (IsName("not")) {
    DepthGuard guard(this);
    if (guard.exceeded()) {
      return ErrorAt(Peek(), "expression nested too deeply");
    }
    const Token& at = Next();
    absl::StatusOr<ExprPtr> operand = ParseNot();
    if (!operand.ok()) return operand;
    ExprPtr node;
    Make(&node, Expr::Kind::kNot, at)->items.push_back(*std::move(operand));
    return node;
  }
  return ParseCompare();
}

absl::StatusOr<ExprPtr> Parser::ParseCompare() {
  const Token& at = Peek();
  absl::StatusOr<ExprPtr> first = ParseMath1();
  if (!first.ok()) return first;
  std::vector<std::string> ops;
  std::vector<ExprPtr> operands;
  operands.push_back(*std::move(first));
  while (true) {
    std::string op;
    const Token& t = Peek();
    if (t.type == TokenType::kOperator &&
        (t.value == "==" || t.value == "!=" || t.value == "<" ||
         t.value == "<=" || t.value == ">" || t.value == ">=")) {
      op = Next().value;
    } else if (IsName("in")) {
      Next();
      op = "in";
    } else if (IsName("not") && IsName("in", 1)) {
      Next();
      Next();
      op = "notin";
    } else {
      break;
    }
    absl::StatusOr<ExprPtr> operand = ParseMath1();
    if (!operand.ok()) return operand;
    ops.push_back(std::move(op));
    operands.push_back(*std::move(operand));
  }
  if (ops.empty()) return std::move(operands[0]);
  ExprPtr node;
  Expr* n = Make(&node, Expr::Kind::kCompare, at);
  n->ops = std::move(ops);
  n->items = std::move(operands);
  return node;
}

// One level of left-associative binary operators.
template <typename Next_>
absl::StatusOr<ExprPtr> Parser::ParseBinaryLevel(
    std::initializer_list<absl::string_view> ops, Next_ next) {
  const Token& at = Peek();
  absl::StatusOr<ExprPtr> left = next();
  if (!left.ok()) return left;
  ExprPtr result = *std::move(left);
  while (true) {
    const Token& t = Peek();
    if (t.type != TokenType::kOperator ||
        std::find(ops.begin(), ops.end(), t.value) == ops.end()) {
      return result;
    }
    const std::string op = Next().value;
    absl::StatusOr<ExprPtr> right = next();
    if (!right.ok()) return right;
    result = MakeBinary(at, op, std::move(result), *std::move(right));
  }
}

absl::StatusOr<ExprPtr> Parser::ParseMath1() {
  return ParseBinaryLevel({"+", "-"}, [this] { return ParseConcat(); });
}

absl::StatusOr<ExprPtr> Parser::ParseConcat() {
  return ParseBinaryLevel({"~"}, [this] { return ParseMath2(); });
}

absl::StatusOr<ExprPtr> Parser::ParseMath2() {
  return ParseBinaryLevel({"*", "/", "//", "%"}, [this] { return ParsePow(); });
}

absl::StatusOr<ExprPtr> Parser::ParsePow() {
  return ParseBinaryLevel({"**"}, [this] { return ParseUnary(true); });
}

absl::StatusOr<ExprPtr> Parser::ParseUnary(bool with_filter) {
  DepthGuard guard(this);
  if (guard.exceeded()) return ErrorAt(Peek(), "expression nested too deeply");
  const Token& at = Peek();
  ExprPtr node;
  if (IsOp("-") || IsOp("+")) {
    const bool neg = Next().value == "-";
    absl::StatusOr<ExprPtr> operand = ParseUnary(false);
    if (!operand.ok()) return operand;
    Make(&node, neg ? Expr::Kind::kNeg : Expr::Kind::kPos, at)
        ->items.push_back(*std::move(operand));
  } else {
    absl::StatusOr<ExprPtr> primary = ParsePrimary();
    if (!primary.ok()) return primary;
    node = *std::move(primary);
  }
  absl::StatusOr<ExprPtr> post = ParsePostfix(std::move(node));
  if (!post.ok() || !with_filter) return post;
  return ParseFilterExpr(*std::move(post));
}

absl::StatusOr<ExprPtr> Parser::ParsePrimary() {
  const Token& t = Peek();
  ExprPtr node;
  switch (t.type) {
    case TokenType::kName: {
      Next();
      const std::string& v = t.value;
      if (v == "true" || v == "True") {
        Make(&node, Expr::Kind::kLiteral, t)->value = JinjaValue::Bool(true);
      } else if (v == "false" || v == "False") {
        Make(&node, Expr::Kind::kLiteral, t)->value = JinjaValue::Bool(false);
      } else if (v == "none" || v == "None") {
        Make(&node, Expr::Kind::kLiteral, t)->value = JinjaValue::None();
      } else {
        Make(&node, Expr::Kind::kName, t)->name = v;
      }
      return node;
    }
    case TokenType::kString: {
      std::string s = Next().value;
      while (Peek().type == TokenType::kString) s += Next().value;
      Make(&node, Expr::Kind::kLiteral, t)->value =
          JinjaValue::String(std::move(s));
      return node;
    }
    case TokenType::kInt: {
      int64_t v;
      if (!absl::SimpleAtoi(t.value, &v)) {
        return ErrorAt(t, "integer literal out of range");
      }
      Next();
      Make(&node, Expr::Kind::kLiteral, t)->value = JinjaValue::Int(v);
      return node;
    }
    case TokenType::kFloat: {
      Next();
      Make(&node, Expr::Kind::kLiteral, t)->value =
          JinjaValue::Float(std::strtod(t.value.c_str(), nullptr));
      return node;
    }
    case TokenType::kOperator:
      if (t.value == "(") {
        Next();
        absl::StatusOr<ExprPtr> inner = ParseTuple(true, {}, true);
        if (!inner.ok()) return inner;
        absl::Status st = ExpectOp(")");
        if (!st.ok()) return st;
        return inner;
      }
      if (t.value == "[") return ParseList();
      if (t.value == "{") return ParseDict();
      break;
    default:
      break;
  }
  return Unexpected("an expression");
}

absl::StatusOr<ExprPtr> Parser::ParseList() {
  ExprPtr node;
  Expr* n = Make(&node, Expr::Kind::kList, Next());
  while (!IsOp("]")) {
    if (!n->items.empty()) {
      absl::Status st = ExpectOp(",");
      if (!st.ok()) return st;
      if (IsOp("]")) break;
    }
    absl::StatusOr<ExprPtr> item = ParseExpression();
    if (!item.ok()) return item;
    n->items.push_back(*std::move(item));
  }
  Next();
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseDict() {
  ExprPtr node;
  Expr* n = Make(&node, Expr::Kind::kDict, Next());
  while (!IsOp("}")) {
    if (!n->items.empty()) {
      absl::Status st = ExpectOp(",");
      if (!st.ok()) return st;
      if (IsOp("}")) break;
    }
    absl::StatusOr<ExprPtr> key = ParseExpression();
    if (!key.ok()) return key;
    absl::Status st = ExpectOp(":");
    if (!st.ok()) return st;
    absl::StatusOr<ExprPtr> value = ParseExpression();
    if (!value.ok()) return value;
    n->items.push_back(*std::move(key));
    n->items.push_back(*std::move(value));
  }
  Next();
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParsePostfix(ExprPtr node) {
  while (true) {
    const Token& at = Peek();
    if (IsOp(".")) {
      Next();
      const Token& attr = Peek();
      ExprPtr n;
      if (attr.type == TokenType::kName) {
        Expr* e = Make(&n, Expr::Kind::kGetAttr, at);
        e->name = Next().value;
        e->items.push_back(std::move(node));
      } else if (attr.type == TokenType::kInt) {
        // foo.0 is foo[0].
        absl::StatusOr<ExprPtr> index = ParsePrimary();
        if (!index.ok()) return index;
        Expr* e = Make(&n, Expr::Kind::kGetItem, at);
        e->items.push_back(std::move(node));
        e->items.push_back(*std::move(index));
      } else {
        return Unexpected("an attribute name");
      }
      node = std::move(n);
    } else if (IsOp("[")) {
      Next();
      absl::StatusOr<ExprPtr> sub = ParseSubscript(std::move(node), at);
      if (!sub.ok()) return sub;
      node = *std::move(sub);
    } else if (IsOp("(")) {
      absl::StatusOr<ExprPtr> call = ParseCall(std::move(node));
      if (!call.ok()) return call;
      node = *std::move(call);
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> Parser::ParseSubscript(ExprPtr obj, const Token& at) {
  ExprPtr parts[3];
  bool is_slice = false;
  auto at_part_end = [&] { return IsOp(":") || IsOp("]"); };
  if (!at_part_end()) {
    absl::StatusOr<ExprPtr> e = ParseExpression();
    if (!e.ok()) return e;
    parts[0] = *std::move(e);
  }
  for (int i = 1; i < 3 && IsOp(":"); ++i) {
    Next();
    is_slice = true;
    if (!at_part_end()) {
      absl::StatusOr<ExprPtr> e = ParseExpression();
      if (!e.ok()) return e;
      parts[i] = *std::move(e);
    }
  }
  absl::Status st = ExpectOp("]");
  if (!st.ok()) return st;
  ExprPtr node;
  if (!is_slice) {
    if (parts[0] == nullptr) return ErrorAt(at, "empty subscript");
    Expr* n = Make(&node, Expr::Kind::kGetItem, at);
    n->items.push_back(std::move(obj));
    n->items.push_back(std::move(parts[0]));
    return node;
  }
  Expr* n = Make(&node, Expr::Kind::kSlice, at);
  n->items.push_back(std::move(obj));
  for (ExprPtr& p : parts) n->items.push_back(std::move(p));
  return node;
}

// Arguments of a call, filter or test: `(a, b, key=c)`.
absl::Status Parser::ParseArgs(Expr* n) {
  absl::Status st = ExpectOp("(");
  if (!st.ok()) return st;
  bool first = true;
  while (!IsOp(")")) {
    if (!first) {
      st = ExpectOp(",");
      if (!st.ok()) return st;
      if (IsOp(")")) break;
    }
    first = false;
    if (IsOp("*") || IsOp("**")) {
      return ErrorAt(Peek(), "*args and **kwargs in calls are not supported");
    }
    if (Peek().type == TokenType::kName && IsOp("=", 1)) {
      std::string key = Next().value;
      Next();
      absl::StatusOr<ExprPtr> value = ParseExpression();
      if (!value.ok()) return value.status();
      n->keywords.emplace_back(std::move(key), *std::move(value));
      continue;
    }
    if (!n->keywords.empty()) {
      return ErrorAt(Peek(), "positional argument follows keyword argument");
    }
    absl::StatusOr<ExprPtr> value = ParseExpression();
    if (!value.ok()) return value.status();
    n->items.push_back(*std::move(value));
  }
  Next();
  return absl::OkStatus();
}

absl::StatusOr<ExprPtr> Parser::ParseCall(ExprPtr callee) {
  ExprPtr node;
  Expr* n = Make(&node, Expr::Kind::kCall, Peek());
  n->items.push_back(std::move(callee));
  absl::Status st = ParseArgs(n);
  if (!st.ok()) return st;
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    if (IsOp("|")) {
      absl::StatusOr<ExprPtr> f = ParseFilterChain(std::move(node));
      if (!f.ok()) return f;
      node = *std::move(f);
    } else if (IsName("is")) {
      absl::StatusOr<ExprPtr> t = ParseTest(std::move(node));
      if (!t.ok()) return t;
      node = *std::move(t);
    } else if (IsOp("(")) {
      absl::StatusOr<ExprPtr> c = ParseCall(std::move(node));
      if (!c.ok()) return c;
      node = *std::move(c);
    } else {
      return node;
    }
  }
}

// `|f(args)|g...` applied to `input` (null in filter blocks). With
// `first` the leading "|" is absent ({% filter f %}).
absl::StatusOr<ExprPtr> Parser::ParseFilterChain(ExprPtr input, bool first) {
  while (first || IsOp("|")) {
    if (!first) Next();
    first = false;
    const Token& at = Peek();
    absl::StatusOr<std::string> name = ExpectName();
    if (!name.ok()) return name.status();
    while (IsOp(".")) {
      Next();
      absl::StatusOr<std::string> part = ExpectName();
      if (!part.ok()) return part.status();
      *name += "." + *part;
    }
    if (!IsKnownFilter(*name)) {
      return ErrorAt(at, absl::StrCat("no filter named '", *name, "'"));
    }
    ExprPtr node;
    Expr* n = Make(&node, Expr::Kind::kFilter, at);
    n->name = *name;
    n->items.push_back(std::move(input));
    if (IsOp("(")) {
      absl::Status st = ParseArgs(n);
      if (!st.ok()) return st;
    }
    input = std::move(node);
  }
  return input;
}

absl::StatusOr<ExprPtr> Parser::ParseTest(ExprPtr operand) {
  const Token& at = Next();  // "is"
  ExprPtr node;
  Expr* n = Make(&node, Expr::Kind::kTest, at);
  if (IsName("not")) {
    Next();
    n->negated = true;
  }
  const Token& name_token = Peek();
  absl::StatusOr<std::string> name = ExpectName();
  if (!name.ok()) return name.status();
  if (!IsKnownTest(*name)) {
    return ErrorAt(name_token, absl::StrCat("no test named '", *name, "'"));
  }
  n->name = *name;
  n->items.push_back(std::move(operand));
  const Token& t = Peek();
  if (IsOp("(")) {
    absl::Status st = ParseArgs(n);
    if (!st.ok()) return st;
  } else if ((t.type == TokenType::kName || t.type == TokenType::kString ||
              t.type == TokenType::kInt || t.type == TokenType::kFloat ||
              IsOp("[") || IsOp("{")) &&
             !IsName("else") && !IsName("or") && !IsName("and")) {
    if (IsName("is")) {
      return ErrorAt(t, "you cannot chain multiple tests with is");
    }
    // `x is divisibleby 3`, `x is sameas false`: one argument.
    absl::StatusOr<ExprPtr> arg = ParsePrimary();
    if (!arg.ok()) return arg;
    absl::StatusOr<ExprPtr> post = ParsePostfix(*std::move(arg));
    if (!post.ok()) return post;
    n->items.push_back(*std::move(post));
  }
  return node;
}

}  // namespace spikeserve::jinja::internal
