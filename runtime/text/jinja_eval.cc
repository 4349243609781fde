#include "runtime/text/jinja_eval.h"

#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/text/jinja_builtins.h"
#include "runtime/text/jinja_strings.h"

namespace spikeserve::jinja {
namespace {

absl::Status TypeError(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

absl::Status Overflow() {
  return absl::InvalidArgumentError("integer overflow");
}

}  // namespace

absl::Status Annotate(absl::Status status, int line, int column) {
  if (status.ok() || status.GetPayload(kRaisedExceptionPayload).has_value() ||
      absl::StartsWith(status.message(), "line ")) {
    return status;
  }
  return absl::Status(
      status.code(),
      absl::StrCat("line ", line, ", column ", column, ": ", status.message()));
}

absl::Status UndefinedError(const JinjaValue& value) {
  const std::string& hint = value.UndefinedHint();
  return absl::InvalidArgumentError(hint.empty() ? "value is undefined" : hint);
}

Interpreter::Interpreter(const JinjaValue& context, JinjaDict globals,
                         const RenderLimits& limits)
    : context_(context), globals_(std::move(globals)), limits_(limits) {
  // namespace() is defined here, not with the other globals, so that the
  // namespaces it makes are known to this render (see namespaces_).
  const JinjaValue* builtin = globals_.Find("namespace");
  if (builtin != nullptr && builtin->IsCallable()) {
    JinjaCallable::Function make = builtin->AsCallable().function;
    globals_.Set(
        "namespace",
        JinjaValue::Callable(
            "namespace",
            [this, make](JinjaCallArgs& args) -> absl::StatusOr<JinjaValue> {
              absl::StatusOr<JinjaValue> ns = make(args);
              if (ns.ok()) namespaces_.push_back(*ns);
              return ns;
            }));
  }
}

Interpreter::~Interpreter() {
  for (JinjaValue& ns : namespaces_) {
    if (ns.IsNamespace()) ns.NamespaceAttributes().Clear();
  }
}

absl::StatusOr<std::string> Interpreter::Render(const Body& body) {
  auto scope = std::make_shared<Scope>();
  std::string out;
  absl::StatusOr<Flow> flow = Execute(body, scope, &out);
  if (!flow.ok()) return flow.status();
  return out;
}

absl::Status Interpreter::CheckSize(size_t bytes) const {
  if (int64_t(bytes) > limits_.max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "template value or output exceeds ", limits_.max_bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status Interpreter::CheckSize(const JinjaValue& value) const {
  if (value.IsString()) return CheckSize(value.AsString().size());
  // A list element costs at least a few bytes; bound the count.
  if (value.IsList()) return CheckSize(value.AsList().size() * 16);
  return absl::OkStatus();
}

absl::Status Interpreter::Step() { return Charge(1); }

absl::Status Interpreter::Copied(size_t bytes) {
  return Charge(1 + int64_t(bytes / kBytesPerStep));
}

absl::Status Interpreter::Charge(int64_t steps) {
  steps_ += steps;
  if (steps_ > limits_.max_steps) {
    return absl::ResourceExhaustedError(
        absl::StrCat("template exceeded ", limits_.max_steps,
                     " steps (loop iterations, macro calls, and bulk work: "
                     "KiB copied by concatenation, tojson output)"));
  }
  return absl::OkStatus();
}

absl::Status Interpreter::Append(std::string* out,
                                 absl::string_view text) const {
  absl::Status s = CheckSize(out->size() + text.size());
  if (!s.ok()) return s;
  absl::StrAppend(out, text);
  return absl::OkStatus();
}

JinjaValue Interpreter::Lookup(const std::string& name,
                               const ScopePtr& scope) const {
  for (const Scope* s = scope.get(); s != nullptr; s = s->parent.get()) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) return it->second;
  }
  if (context_.IsDict()) {
    if (const JinjaValue* v = context_.AsDict().Find(name)) return *v;
  }
  if (const JinjaValue* v = globals_.Find(name)) return *v;
  return JinjaValue::Undefined(absl::StrCat("'", name, "' is undefined"));
}

// ---- Statements ----

absl::StatusOr<Interpreter::Flow> Interpreter::Execute(const Body& body,
                                                       const ScopePtr& scope,
                                                       std::string* out) {
  for (const StmtPtr& stmt : body) {
    absl::StatusOr<Flow> flow = ExecuteStmt(*stmt, scope, out);
    if (!flow.ok()) return Annotate(flow.status(), stmt->line, stmt->column);
    if (*flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

absl::StatusOr<Interpreter::Flow> Interpreter::ExecuteStmt(
    const Stmt& stmt, const ScopePtr& scope, std::string* out) {
  switch (stmt.kind) {
    case Stmt::Kind::kText: {
      absl::Status s = Append(out, stmt.text);
      if (!s.ok()) return s;
      return Flow::kNormal;
    }
    case Stmt::Kind::kOutput: {
      absl::StatusOr<JinjaValue> v = Eval(*stmt.expr, scope);
      if (!v.ok()) return v.status();
      absl::Status s =
          v->IsString() ? Append(out, v->AsString()) : Append(out, v->Str());
      if (!s.ok()) return s;
      return Flow::kNormal;
    }
    case Stmt::Kind::kIf:
      for (const auto& [cond, body] : stmt.branches) {
        absl::StatusOr<JinjaValue> c = Eval(*cond, scope);
        if (!c.ok()) return c.status();
        if (c->Truthy()) return Execute(body, scope, out);
      }
      return Execute(stmt.else_body, scope, out);
    case Stmt::Kind::kFor:
      return ExecuteFor(stmt, scope, out);
    case Stmt::Kind::kSet: {
      absl::StatusOr<JinjaValue> v = Eval(*stmt.expr, scope);
      if (!v.ok()) return v.status();
      absl::Status s = Assign(stmt, scope, *std::move(v));
      if (!s.ok()) return s;
      return Flow::kNormal;
    }
    case Stmt::Kind::kSetBlock:
    case Stmt::Kind::kFilterBlock: {
      // The body renders in a scope of its own, as jinja2's block frames.
      auto inner = std::make_shared<Scope>();
      inner->parent = scope;
      std::string captured;
      absl::StatusOr<Flow> flow = Execute(stmt.body, inner, &captured);
      if (!flow.ok()) return flow.status();
      // jinja2 compiles the body inline: a break or continue in it leaves
      // the enclosing loop at once, and nothing is assigned or written.
      if (*flow != Flow::kNormal) return flow;
      JinjaValue value = JinjaValue::String(std::move(captured));
      if (stmt.expr != nullptr) {
        absl::StatusOr<JinjaValue> filtered =
            EvalFilter(*stmt.expr, std::move(value), scope);
        if (!filtered.ok()) return filtered.status();
        value = *std::move(filtered);
      }
      if (stmt.kind == Stmt::Kind::kFilterBlock) {
        absl::Status s =
            Append(out, value.IsString() ? value.AsString() : value.Str());
        if (!s.ok()) return s;
        return Flow::kNormal;
      }
      absl::Status s = Assign(stmt, scope, std::move(value));
      if (!s.ok()) return s;
      return Flow::kNormal;
    }
    case Stmt::Kind::kMacro: {
      absl::Status s = DefineMacro(stmt, scope);
      if (!s.ok()) return s;
      return Flow::kNormal;
    }
    case Stmt::Kind::kBreak:
      return Flow::kBreak;
    case Stmt::Kind::kContinue:
      return Flow::kContinue;
  }
  return Flow::kNormal;
}

absl::Status Interpreter::Assign(const Stmt& stmt, const ScopePtr& scope,
                                 JinjaValue value) {
  if (!stmt.attribute.empty()) {
    JinjaValue target = Lookup(stmt.targets[0], scope);
    if (!target.IsNamespace()) {
      return TypeError(
          absl::StrCat("cannot assign attribute on non-namespace object '",
                       stmt.targets[0], "'"));
    }
    target.NamespaceAttributes().Set(stmt.attribute, std::move(value));
    return absl::OkStatus();
  }
  if (stmt.targets.size() == 1) {
    scope->vars[stmt.targets[0]] = std::move(value);
    return absl::OkStatus();
  }
  absl::StatusOr<JinjaValue::ListData> items = Iterate(value);
  if (!items.ok()) return items.status();
  if (items->size() != stmt.targets.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot unpack ", items->size(), " values into ",
                     stmt.targets.size(), " names"));
  }
  for (size_t i = 0; i < items->size(); ++i) {
    scope->vars[stmt.targets[i]] = (*items)[i];
  }
  return absl::OkStatus();
}

absl::StatusOr<Interpreter::Flow> Interpreter::ExecuteFor(const Stmt& stmt,
                                                          const ScopePtr& scope,
                                                          std::string* out) {
  absl::StatusOr<JinjaValue> iterable = Eval(*stmt.expr, scope);
  if (!iterable.ok()) return iterable.status();
  absl::StatusOr<JinjaValue::ListData> all = Iterate(*iterable);
  if (!all.ok()) return all.status();

  auto bind = [&](const ScopePtr& s, const JinjaValue& item) -> absl::Status {
    if (stmt.targets.size() == 1) {
      s->vars[stmt.targets[0]] = item;
      return absl::OkStatus();
    }
    absl::StatusOr<JinjaValue::ListData> parts = Iterate(item);
    if (!parts.ok()) return parts.status();
    if (parts->size() != stmt.targets.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot unpack ", parts->size(), " values into ",
                       stmt.targets.size(), " loop variables"));
    }
    for (size_t i = 0; i < parts->size(); ++i) {
      s->vars[stmt.targets[i]] = (*parts)[i];
    }
    return absl::OkStatus();
  };

  // The inline `if` filters before the loop runs: loop.length, loop.last
  // and friends count only the items that pass.
  JinjaValue::ListData items;
  if (stmt.cond != nullptr) {
    for (const JinjaValue& item : *all) {
      absl::Status st = Step();
      if (!st.ok()) return st;
      auto probe = std::make_shared<Scope>();
      probe->parent = scope;
      st = bind(probe, item);
      if (!st.ok()) return st;
      absl::StatusOr<JinjaValue> keep = Eval(*stmt.cond, probe);
      if (!keep.ok()) return keep.status();
      if (keep->Truthy()) items.push_back(item);
    }
  } else {
    items = *std::move(all);
  }

  const int64_t n = int64_t(items.size());
  // jinja2 runs the else block unless some iteration reached the end of the
  // body: also after a break (or continues) in every iteration.
  bool completed_an_iteration = false;
  for (int64_t i = 0; i < n; ++i) {
    absl::Status st = Step();
    if (!st.ok()) return st;
    // A fresh scope per iteration: a `set` in one iteration is not seen by
    // the next (jinja2 behaviour).
    auto inner = std::make_shared<Scope>();
    inner->parent = scope;
    st = bind(inner, items[i]);
    if (!st.ok()) return st;
    JinjaDict loop;
    loop.Set("index", JinjaValue::Int(i + 1));
    loop.Set("index0", JinjaValue::Int(i));
    loop.Set("revindex", JinjaValue::Int(n - i));
    loop.Set("revindex0", JinjaValue::Int(n - i - 1));
    loop.Set("first", JinjaValue::Bool(i == 0));
    loop.Set("last", JinjaValue::Bool(i == n - 1));
    loop.Set("length", JinjaValue::Int(n));
    loop.Set("depth", JinjaValue::Int(1));
    loop.Set("depth0", JinjaValue::Int(0));
    loop.Set("previtem",
             i > 0 ? items[i - 1]
                   : JinjaValue::Undefined("there is no previous item"));
    loop.Set("nextitem", i + 1 < n
                             ? items[i + 1]
                             : JinjaValue::Undefined("there is no next item"));
    loop.Set(
        "cycle",
        JinjaValue::Callable(
            "loop.cycle",
            [i](JinjaCallArgs& args) -> absl::StatusOr<JinjaValue> {
              if (args.positional.empty()) {
                return absl::InvalidArgumentError("no items for cycling given");
              }
              return args.positional[size_t(i) % args.positional.size()];
            }));
    inner->vars["loop"] = JinjaValue::Namespace(std::move(loop));
    absl::StatusOr<Flow> flow = Execute(stmt.body, inner, out);
    if (!flow.ok()) return flow.status();
    if (*flow == Flow::kBreak) break;
    if (*flow == Flow::kNormal) completed_an_iteration = true;
  }
  if (!completed_an_iteration && !stmt.else_body.empty()) {
    auto inner = std::make_shared<Scope>();
    inner->parent = scope;
    // The else block follows the loop: a break or continue in it belongs
    // to the enclosing loop.
    return Execute(stmt.else_body, inner, out);
  }
  return Flow::kNormal;
}

absl::Status Interpreter::DefineMacro(const Stmt& stmt, const ScopePtr& scope) {
  // The macro refers to its defining scope weakly: the scope holds the
  // macro, and a strong reference would make a cycle.
  std::weak_ptr<Scope> weak = scope;
  const Stmt* macro = &stmt;
  scope->vars[stmt.text] = JinjaValue::Callable(
      stmt.text,
      [this, macro, weak](JinjaCallArgs& args) -> absl::StatusOr<JinjaValue> {
        return CallMacro(*macro, weak, args);
      });
  return absl::OkStatus();
}

absl::StatusOr<JinjaValue> Interpreter::CallMacro(
    const Stmt& stmt, const std::weak_ptr<Scope>& defining,
    JinjaCallArgs& args) {
  ScopePtr parent = defining.lock();
  if (parent == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("macro '", stmt.text, "' called after its scope ended"));
  }
  absl::Status st = Step();
  if (!st.ok()) return st;
  if (call_depth_ >= limits_.max_call_depth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("macro calls nested deeper than ", limits_.max_call_depth,
                     " (recursion)"));
  }
  const size_t n = stmt.targets.size();
  if (args.positional.size() > n) {
    return TypeError(absl::StrCat("macro '", stmt.text,
                                  "' takes not more than ", n, " argument(s)"));
  }
  auto scope = std::make_shared<Scope>();
  scope->parent = parent;
  std::vector<bool> given(n, false);
  for (size_t i = 0; i < args.positional.size(); ++i) {
    scope->vars[stmt.targets[i]] = args.positional[i];
    given[i] = true;
  }
  for (auto& [key, value] : args.keyword) {
    size_t i = 0;
    while (i < n && stmt.targets[i] != key) ++i;
    if (i == n) {
      return TypeError(absl::StrCat("macro '", stmt.text,
                                    "' takes no keyword argument '", key, "'"));
    }
    scope->vars[key] = value;
    given[i] = true;
  }
  // Defaults are evaluated at call time, in the macro's scope (they may
  // refer to earlier parameters).
  for (size_t i = 0; i < n; ++i) {
    if (given[i]) continue;
    if (stmt.defaults[i] != nullptr) {
      absl::StatusOr<JinjaValue> v = Eval(*stmt.defaults[i], scope);
      if (!v.ok()) return v.status();
      scope->vars[stmt.targets[i]] = *std::move(v);
    } else {
      scope->vars[stmt.targets[i]] = JinjaValue::Undefined(
          absl::StrCat("parameter '", stmt.targets[i], "' was not provided"));
    }
  }
  ++call_depth_;
  std::string out;
  absl::StatusOr<Flow> flow = Execute(stmt.body, scope, &out);
  --call_depth_;
  if (!flow.ok()) return flow.status();
  return JinjaValue::String(std::move(out));
}

absl::StatusOr<JinjaValue> Interpreter::Call(const JinjaValue& callee,
                                             JinjaCallArgs& args) {
  if (callee.IsUndefined()) return UndefinedError(callee);
  if (!callee.IsCallable()) {
    return TypeError(
        absl::StrCat("'", callee.TypeName(), "' object is not callable"));
  }
  return callee.AsCallable().function(args);
}

// ---- Expressions ----

absl::StatusOr<JinjaValue> Interpreter::Eval(const Expr& e,
                                             const ScopePtr& scope) {
  absl::StatusOr<JinjaValue> v = EvalUnchecked(e, scope);
  if (!v.ok()) return Annotate(v.status(), e.line, e.column);
  return v;
}

absl::StatusOr<JinjaCallArgs> Interpreter::EvalArgs(const Expr& e, size_t first,
                                                    const ScopePtr& scope) {
  JinjaCallArgs args;
  for (size_t i = first; i < e.items.size(); ++i) {
    absl::StatusOr<JinjaValue> v = Eval(*e.items[i], scope);
    if (!v.ok()) return v.status();
    args.positional.push_back(*std::move(v));
  }
  for (const auto& [key, expr] : e.keywords) {
    absl::StatusOr<JinjaValue> v = Eval(*expr, scope);
    if (!v.ok()) return v.status();
    args.keyword.emplace_back(key, *std::move(v));
  }
  return args;
}

absl::StatusOr<JinjaValue> Interpreter::EvalFilter(const Expr& e,
                                                   JinjaValue input,
                                                   const ScopePtr& scope) {
  // A chain a|f|g nests as g(f(a)); the innermost input may be given
  // (filter blocks) in place of the null leaf.
  if (e.items[0] != nullptr) {
    const Expr& inner = *e.items[0];
    absl::StatusOr<JinjaValue> v =
        inner.kind == Expr::Kind::kFilter &&
                (inner.items[0] == nullptr ||
                 inner.items[0]->kind == Expr::Kind::kFilter)
            ? EvalFilter(inner, std::move(input), scope)
            : Eval(inner, scope);
    if (!v.ok()) return v.status();
    input = *std::move(v);
  }
  absl::StatusOr<JinjaCallArgs> args = EvalArgs(e, 1, scope);
  if (!args.ok()) return args.status();
  absl::StatusOr<JinjaValue> result = ApplyFilter(*this, e.name, input, *args);
  if (!result.ok()) return Annotate(result.status(), e.line, e.column);
  absl::Status s = CheckSize(*result);
  if (!s.ok()) return s;
  return result;
}

absl::StatusOr<JinjaValue> Interpreter::Slice(const Expr& e,
                                              const ScopePtr& scope) {
  absl::StatusOr<JinjaValue> obj = Eval(*e.items[0], scope);
  if (!obj.ok()) return obj;
  std::optional<int64_t> bounds[3];
  for (int i = 0; i < 3; ++i) {
    if (e.items[i + 1] == nullptr) continue;
    absl::StatusOr<JinjaValue> v = Eval(*e.items[i + 1], scope);
    if (!v.ok()) return v;
    if (v->IsNone()) continue;
    if (!v->IsIntegral()) {
      return TypeError(
          "slice indices must be integers or None or have an __index__ "
          "method");
    }
    bounds[i] = v->AsInt();
  }
  const int64_t step = bounds[2].value_or(1);
  if (step == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  if (obj->IsUndefined()) return UndefinedError(*obj);
  if (obj->IsString()) {
    std::string s = PySliceString(obj->AsString(), bounds[0], bounds[1], step);
    return obj->IsMarkup() ? JinjaValue::Markup(std::move(s))
                           : JinjaValue::String(std::move(s));
  }
  if (obj->IsSequence()) {
    const auto& items = obj->AsList();
    JinjaValue::ListData out;
    for (int64_t i :
         SliceIndices(int64_t(items.size()), bounds[0], bounds[1], step)) {
      out.push_back(items[size_t(i)]);
    }
    return obj->IsTuple() ? JinjaValue::Tuple(std::move(out))
                          : JinjaValue::List(std::move(out));
  }
  // jinja2's getitem turns the TypeError into an undefined value.
  return JinjaValue::Undefined(
      absl::StrCat("'", obj->TypeName(), " object' is not subscriptable"));
}

absl::StatusOr<JinjaValue> Interpreter::EvalUnchecked(const Expr& e,
                                                      const ScopePtr& scope) {
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      return e.value;
    case Expr::Kind::kName:
      return Lookup(e.name, scope);
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      JinjaValue::ListData items;
      for (const ExprPtr& item : e.items) {
        absl::StatusOr<JinjaValue> v = Eval(*item, scope);
        if (!v.ok()) return v;
        items.push_back(*std::move(v));
      }
      return e.kind == Expr::Kind::kList ? JinjaValue::List(std::move(items))
                                         : JinjaValue::Tuple(std::move(items));
    }
    case Expr::Kind::kDict: {
      JinjaDict dict;
      for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
        absl::StatusOr<JinjaValue> k = Eval(*e.items[i], scope);
        if (!k.ok()) return k;
        if (!k->IsHashable()) {
          return TypeError(
              absl::StrCat("unhashable type: '", k->TypeName(), "'"));
        }
        absl::StatusOr<JinjaValue> v = Eval(*e.items[i + 1], scope);
        if (!v.ok()) return v;
        dict.Set(*k, *std::move(v));
      }
      return JinjaValue::Dict(std::move(dict));
    }
    case Expr::Kind::kGetAttr: {
      absl::StatusOr<JinjaValue> obj = Eval(*e.items[0], scope);
      if (!obj.ok()) return obj;
      return GetAttr(*obj, e.name);
    }
    case Expr::Kind::kGetItem: {
      absl::StatusOr<JinjaValue> obj = Eval(*e.items[0], scope);
      if (!obj.ok()) return obj;
      absl::StatusOr<JinjaValue> key = Eval(*e.items[1], scope);
      if (!key.ok()) return key;
      return GetItem(*obj, *key);
    }
    case Expr::Kind::kSlice:
      return Slice(e, scope);
    case Expr::Kind::kCall: {
      absl::StatusOr<JinjaValue> callee = Eval(*e.items[0], scope);
      if (!callee.ok()) return callee;
      absl::StatusOr<JinjaCallArgs> args = EvalArgs(e, 1, scope);
      if (!args.ok()) return args.status();
      absl::StatusOr<JinjaValue> result = Call(*callee, *args);
      if (!result.ok()) return result;
      absl::Status s = CheckSize(*result);
      if (!s.ok()) return s;
      return result;
    }
    case Expr::Kind::kFilter:
      return EvalFilter(e, JinjaValue(), scope);
    case Expr::Kind::kTest: {
      absl::StatusOr<JinjaValue> operand = Eval(*e.items[0], scope);
      if (!operand.ok()) return operand;
      absl::StatusOr<JinjaCallArgs> args = EvalArgs(e, 1, scope);
      if (!args.ok()) return args.status();
      absl::StatusOr<bool> r = ApplyTest(*this, e.name, *operand, *args);
      if (!r.ok()) return r.status();
      return JinjaValue::Bool(*r != e.negated);
    }
    case Expr::Kind::kNot: {
      absl::StatusOr<JinjaValue> v = Eval(*e.items[0], scope);
      if (!v.ok()) return v;
      return JinjaValue::Bool(!v->Truthy());
    }
    case Expr::Kind::kNeg:
    case Expr::Kind::kPos: {
      absl::StatusOr<JinjaValue> v = Eval(*e.items[0], scope);
      if (!v.ok()) return v;
      if (v->IsUndefined()) return UndefinedError(*v);
      const bool neg = e.kind == Expr::Kind::kNeg;
      if (v->IsFloat())
        return JinjaValue::Float(neg ? -v->AsDouble() : v->AsDouble());
      if (v->IsIntegral()) {
        if (neg && v->AsInt() == INT64_MIN) return Overflow();
        return JinjaValue::Int(neg ? -v->AsInt() : v->AsInt());
      }
      return TypeError(absl::StrCat("bad operand type for unary ",
                                    neg ? "-" : "+", ": '", v->TypeName(),
                                    "'"));
    }
    case Expr::Kind::kBinary: {
      absl::StatusOr<JinjaValue> a = Eval(*e.items[0], scope);
      if (!a.ok()) return a;
      // and/or return an operand, as in Python.
      if (e.name == "and" && !a->Truthy()) return a;
      if (e.name == "or" && a->Truthy()) return a;
      absl::StatusOr<JinjaValue> b = Eval(*e.items[1], scope);
      if (!b.ok()) return b;
      if (e.name == "and" || e.name == "or") return b;
      absl::StatusOr<JinjaValue> r = BinaryOp(e.name, *a, *b);
      if (!r.ok()) return r;
      absl::Status s = CheckSize(*r);
      if (!s.ok()) return s;
      return r;
    }
    case Expr::Kind::kCompare: {
      absl::StatusOr<JinjaValue> left = Eval(*e.items[0], scope);
      if (!left.ok()) return left;
      for (size_t i = 0; i < e.ops.size(); ++i) {
        absl::StatusOr<JinjaValue> right = Eval(*e.items[i + 1], scope);
        if (!right.ok()) return right;
        const std::string& op = e.ops[i];
        bool result;
        if (op == "==" || op == "!=") {
          result = left->Equals(*right) == (op == "==");
        } else if (op == "in" || op == "notin") {
          absl::StatusOr<bool> in = Contains(*right, *left);
          if (!in.ok()) return in.status();
          result = *in == (op == "in");
        } else {
          if (left->IsUndefined()) return UndefinedError(*left);
          if (right->IsUndefined()) return UndefinedError(*right);
          absl::StatusOr<int> c = left->Compare(*right);
          if (!c.ok()) return c.status();
          result = op == "<"    ? *c < 0
                   : op == "<=" ? *c <= 0
                   : op == ">"  ? *c > 0
                                : *c >= 0;
        }
        if (!result) return JinjaValue::Bool(false);
        left = std::move(right);
      }
      return JinjaValue::Bool(true);
    }
    case Expr::Kind::kCondExpr: {
      absl::StatusOr<JinjaValue> cond = Eval(*e.items[1], scope);
      if (!cond.ok()) return cond;
      if (cond->Truthy()) return Eval(*e.items[0], scope);
      if (e.items[2] == nullptr) {
        return JinjaValue::Undefined(
            "the inline if-expression evaluated to false and no else "
            "section was defined");
      }
      return Eval(*e.items[2], scope);
    }
  }
  return absl::InternalError("unknown expression");
}

}  // namespace spikeserve::jinja
