// jinja2's built-in tests (`x is defined`, `x is string`, ...), following
// jinja2/tests.py; and the globals every render sees (range, namespace,
// dict).
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/text/jinja_builtins.h"
#include "runtime/text/jinja_eval.h"

namespace spikeserve::jinja {
namespace {

using TestFn = absl::StatusOr<bool> (*)(Interpreter&, const JinjaValue&,
                                        JinjaCallArgs&);

// The one argument of a comparison test, e.g. `x is equalto 3`.
absl::StatusOr<JinjaValue> OneArg(const char* name, JinjaCallArgs& args) {
  absl::StatusOr<ArgBinder> b = ArgBinder::Bind(name, args, {"other"});
  if (!b.ok()) return b.status();
  if (b->Get(0) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("test '", name, "' needs one argument"));
  }
  return *b->Get(0);
}

absl::StatusOr<bool> Ordered(const JinjaValue& v, JinjaCallArgs& args,
                             const char* name, bool (*pred)(int)) {
  absl::StatusOr<JinjaValue> other = OneArg(name, args);
  if (!other.ok()) return other.status();
  if (v.IsUndefined()) return UndefinedError(v);
  if (other->IsUndefined()) return UndefinedError(*other);
  absl::StatusOr<int> c = v.Compare(*other);
  if (!c.ok()) return c.status();
  return pred(*c);
}

// value % 2 == remainder, with Python's modulo (floats too).
absl::StatusOr<bool> Parity(Interpreter& in, const JinjaValue& v,
                            int remainder) {
  absl::StatusOr<JinjaValue> m = in.BinaryOp("%", v, JinjaValue::Int(2));
  if (!m.ok()) return m.status();
  return m->Equals(JinjaValue::Int(remainder));
}

// str(value).islower() / isupper(), ASCII letters.
bool CaseIs(const JinjaValue& v, bool lower) {
  bool cased = false;
  for (char c : v.Str()) {
    if (c >= 'a' && c <= 'z') {
      cased = true;
      if (!lower) return false;
    } else if (c >= 'A' && c <= 'Z') {
      cased = true;
      if (lower) return false;
    }
  }
  return cased;
}

const absl::flat_hash_map<std::string, TestFn>& Tests() {
  static const auto* const tests = new absl::flat_hash_map<std::string, TestFn>{
      {"defined",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return !v.IsUndefined(); }},
      {"undefined",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return v.IsUndefined(); }},
      {"none",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return v.IsNone(); }},
      {"boolean",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return v.IsBool(); }},
      {"true",
       [](Interpreter&, const JinjaValue& v, JinjaCallArgs&)
           -> absl::StatusOr<bool> { return v.IsBool() && v.AsBool(); }},
      {"false",
       [](Interpreter&, const JinjaValue& v, JinjaCallArgs&)
           -> absl::StatusOr<bool> { return v.IsBool() && !v.AsBool(); }},
      {"integer",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return v.IsInt(); }},
      {"float",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return v.IsFloat(); }},
      // isinstance(x, numbers.Number): bool is a number in Python.
      {"number",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return v.IsNumber(); }},
      {"string",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return v.IsString(); }},
      {"mapping",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return v.IsDict(); }},
      // iter(x) works: Undefined is iterable (it yields nothing).
      {"iterable",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> {
         return v.IsUndefined() || v.IsString() || v.IsList() || v.IsDict();
       }},
      // len() and [] work: not generators or dict views.
      {"sequence",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> {
         return v.IsUndefined() || v.IsString() || v.IsSequence() || v.IsDict();
       }},
      {"callable",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return v.IsCallable(); }},
      {"escaped",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return v.IsMarkup(); }},
      {"odd",
       [](Interpreter& in, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return Parity(in, v, 1); }},
      {"even",
       [](Interpreter& in, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return Parity(in, v, 0); }},
      {"lower",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return CaseIs(v, true); }},
      {"upper",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> { return CaseIs(v, false); }},
      {"divisibleby",
       [](Interpreter& in, const JinjaValue& v,
          JinjaCallArgs& args) -> absl::StatusOr<bool> {
         absl::StatusOr<JinjaValue> n = OneArg("divisibleby", args);
         if (!n.ok()) return n.status();
         // value % num == 0 with Python's modulo (floats too).
         absl::StatusOr<JinjaValue> m = in.BinaryOp("%", v, *n);
         if (!m.ok()) return m.status();
         return m->Equals(JinjaValue::Int(0));
       }},
      {"sameas",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs& args) -> absl::StatusOr<bool> {
         absl::StatusOr<JinjaValue> other = OneArg("sameas", args);
         if (!other.ok()) return other.status();
         // Identity: the singletons None/True/False, else the same object.
         if (v.kind() != other->kind()) return false;
         return v.Equals(*other);
       }},
      {"in",
       [](Interpreter& in, const JinjaValue& v,
          JinjaCallArgs& args) -> absl::StatusOr<bool> {
         absl::StatusOr<JinjaValue> seq = OneArg("in", args);
         if (!seq.ok()) return seq.status();
         return in.Contains(*seq, v);
       }},
      {"eq",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs& args) -> absl::StatusOr<bool> {
         absl::StatusOr<JinjaValue> other = OneArg("eq", args);
         if (!other.ok()) return other.status();
         return v.Equals(*other);
       }},
      {"ne",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs& args) -> absl::StatusOr<bool> {
         absl::StatusOr<JinjaValue> other = OneArg("ne", args);
         if (!other.ok()) return other.status();
         return !v.Equals(*other);
       }},
      {"lt",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs& args) -> absl::StatusOr<bool> {
         return Ordered(v, args, "lt", [](int c) { return c < 0; });
       }},
      {"le",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs& args) -> absl::StatusOr<bool> {
         return Ordered(v, args, "le", [](int c) { return c <= 0; });
       }},
      {"gt",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs& args) -> absl::StatusOr<bool> {
         return Ordered(v, args, "gt", [](int c) { return c > 0; });
       }},
      {"ge",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs& args) -> absl::StatusOr<bool> {
         return Ordered(v, args, "ge", [](int c) { return c >= 0; });
       }},
      {"filter",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> {
         return v.IsString() && IsKnownFilter(v.AsString());
       }},
      {"test",
       [](Interpreter&, const JinjaValue& v,
          JinjaCallArgs&) -> absl::StatusOr<bool> {
         return v.IsString() && IsKnownTest(v.AsString());
       }},
  };
  return *tests;
}

// Aliases, as jinja2 registers them.
absl::string_view Canonical(absl::string_view name) {
  if (name == "==" || name == "equalto") return "eq";
  if (name == "!=") return "ne";
  if (name == "<" || name == "lessthan") return "lt";
  if (name == "<=") return "le";
  if (name == ">" || name == "greaterthan") return "gt";
  if (name == ">=") return "ge";
  return name;
}

}  // namespace

bool IsKnownTest(absl::string_view name) {
  return Tests().contains(Canonical(name));
}

absl::StatusOr<bool> ApplyTest(Interpreter& interpreter, absl::string_view name,
                               const JinjaValue& input, JinjaCallArgs& args) {
  auto it = Tests().find(Canonical(name));
  if (it == Tests().end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no test named '", name, "'"));
  }
  return it->second(interpreter, input, args);
}

JinjaDict BuiltinGlobals() {
  JinjaDict globals;
  globals.Set(
      "range",
      JinjaValue::Callable(
          "range", [](JinjaCallArgs& args) -> absl::StatusOr<JinjaValue> {
            if (!args.keyword.empty() || args.positional.empty() ||
                args.positional.size() > 3) {
              return absl::InvalidArgumentError(
                  "range expects 1 to 3 integer arguments");
            }
            int64_t a[3] = {0, 0, 1};
            for (const JinjaValue& v : args.positional) {
              if (!v.IsIntegral()) {
                return absl::InvalidArgumentError(
                    "range arguments must be integers");
              }
            }
            if (args.positional.size() == 1) {
              a[1] = args.positional[0].AsInt();
            } else {
              for (size_t i = 0; i < args.positional.size(); ++i) {
                a[i] = args.positional[i].AsInt();
              }
            }
            if (a[2] == 0) {
              return absl::InvalidArgumentError(
                  "range() arg 3 must not be zero");
            }
            // The sandbox caps ranges (MAX_RANGE = 100000).
            constexpr int64_t kMaxRange = 100000;
            JinjaValue::ListData items;
            for (int64_t i = a[0]; a[2] > 0 ? i < a[1] : i > a[1];) {
              if (int64_t(items.size()) >= kMaxRange) {
                return absl::ResourceExhaustedError(
                    "range too big (at most 100000 items)");
              }
              items.push_back(JinjaValue::Int(i));
              if (__builtin_add_overflow(i, a[2], &i)) break;  // past int64
            }
            return JinjaValue::List(std::move(items));
          }));
  // namespace(...) and dict(...): attributes from a mapping and/or keywords.
  auto from_args = [](JinjaCallArgs& args,
                      const char* name) -> absl::StatusOr<JinjaDict> {
    JinjaDict d;
    if (args.positional.size() > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " expected at most 1 positional argument"));
    }
    if (!args.positional.empty()) {
      const JinjaValue& init = args.positional[0];
      if (init.IsDict()) {
        for (const auto& [k, v] : init.AsDict().items()) d.Set(k, v);
      } else if (init.IsList()) {
        for (const JinjaValue& pair : init.AsList()) {
          if (!pair.IsList() || pair.AsList().size() != 2) {
            return absl::InvalidArgumentError(
                absl::StrCat(name, ": sequence elements must be pairs"));
          }
          d.Set(pair.AsList()[0], pair.AsList()[1]);
        }
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " expects a mapping"));
      }
    }
    for (auto& [k, v] : args.keyword) d.Set(k, v);
    return d;
  };
  globals.Set(
      "namespace",
      JinjaValue::Callable(
          "namespace",
          [from_args](JinjaCallArgs& args) -> absl::StatusOr<JinjaValue> {
            absl::StatusOr<JinjaDict> d = from_args(args, "namespace");
            if (!d.ok()) return d.status();
            return JinjaValue::Namespace(*std::move(d));
          }));
  globals.Set(
      "dict",
      JinjaValue::Callable(
          "dict",
          [from_args](JinjaCallArgs& args) -> absl::StatusOr<JinjaValue> {
            absl::StatusOr<JinjaDict> d = from_args(args, "dict");
            if (!d.ok()) return d.status();
            return JinjaValue::Dict(*std::move(d));
          }));
  return globals;
}

}  // namespace spikeserve::jinja
