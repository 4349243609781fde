// Python semantics of the interpreter's operations: attribute and item
// access as jinja2's sandbox does them, iteration, `in`, and the binary
// operators with Python's rules for int, float, str, list and Markup.
#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/text/jinja_builtins.h"
#include "runtime/text/jinja_eval.h"
#include "runtime/text/jinja_strings.h"

namespace spikeserve::jinja {
namespace {

absl::Status TypeError(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

absl::Status Unsupported(const std::string& op, const JinjaValue& a,
                         const JinjaValue& b) {
  return TypeError(absl::StrCat("unsupported operand type(s) for ", op, ": '",
                                a.TypeName(), "' and '", b.TypeName(), "'"));
}

// Python's floor division and modulo on integers.
int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
int64_t FloorMod(int64_t a, int64_t b) {
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

absl::Status Overflow() {
  return absl::InvalidArgumentError("integer overflow");
}

}  // namespace

absl::StatusOr<JinjaValue> Interpreter::GetAttr(const JinjaValue& obj,
                                                const std::string& name) {
  if (obj.IsUndefined()) return UndefinedError(obj);
  if (obj.IsNamespace()) {
    if (const JinjaValue* v = obj.NamespaceAttributes().Find(name)) return *v;
  } else if (obj.IsString() || obj.IsSequence() || obj.IsDict()) {
    // Python attributes (methods) come first: `d.items` is the method even
    // when the dict has an "items" key.
    absl::StatusOr<std::optional<JinjaValue>> method = GetMethod(obj, name);
    if (!method.ok()) return method.status();
    if (method->has_value()) return **method;
    if (obj.IsDict()) {
      if (const JinjaValue* v = obj.AsDict().Find(name)) return *v;
    }
  }
  return JinjaValue::Undefined(absl::StrCat(
      "'", obj.TypeName(), " object' has no attribute '", name, "'"));
}

absl::StatusOr<JinjaValue> Interpreter::GetItem(const JinjaValue& obj,
                                                const JinjaValue& key) {
  if (obj.IsUndefined()) return UndefinedError(obj);
  if (obj.IsDict() && key.IsHashable()) {
    if (const JinjaValue* v = obj.AsDict().Find(key)) return *v;
  } else if ((obj.IsSequence() || obj.IsString()) && key.IsIntegral()) {
    int64_t i = key.AsInt();
    if (obj.IsSequence()) {
      const int64_t n = int64_t(obj.AsList().size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.AsList()[size_t(i)];
    } else {
      const std::vector<size_t> off = CodePointOffsets(obj.AsString());
      const int64_t n = int64_t(off.size()) - 1;
      if (i < 0) i += n;
      if (i >= 0 && i < n) {
        return JinjaValue::String(obj.AsString().substr(
            off[size_t(i)], off[size_t(i) + 1] - off[size_t(i)]));
      }
    }
    return JinjaValue::Undefined(absl::StrCat(
        "'", obj.TypeName(), " object' has no element ", key.AsInt()));
  }
  // Then the attribute of that name, as jinja2's getitem does.
  if (key.IsString()) return GetAttr(obj, key.AsString());
  return JinjaValue::Undefined(absl::StrCat(
      "'", obj.TypeName(), " object' has no element ", key.Repr()));
}

absl::StatusOr<JinjaValue::ListData> Interpreter::Iterate(
    const JinjaValue& value) {
  switch (value.kind()) {
    case JinjaValue::Kind::kUndefined:
      return JinjaValue::ListData{};
    case JinjaValue::Kind::kList:
      if (const std::string* error = value.DeferredError()) {
        return absl::InvalidArgumentError(*error);
      }
      return value.AsList();
    case JinjaValue::Kind::kDict: {
      JinjaValue::ListData keys;
      for (const auto& item : value.AsDict().items()) {
        keys.push_back(item.first);
      }
      return keys;
    }
    case JinjaValue::Kind::kString: {
      JinjaValue::ListData chars;
      const std::string& s = value.AsString();
      const std::vector<size_t> off = CodePointOffsets(s);
      for (size_t i = 0; i + 1 < off.size(); ++i) {
        chars.push_back(
            JinjaValue::String(s.substr(off[i], off[i + 1] - off[i])));
      }
      return chars;
    }
    default:
      return TypeError(
          absl::StrCat("'", value.TypeName(), "' object is not iterable"));
  }
}

absl::StatusOr<bool> Interpreter::Contains(const JinjaValue& container,
                                           const JinjaValue& item) {
  switch (container.kind()) {
    case JinjaValue::Kind::kUndefined:
      return false;  // iterating an Undefined yields nothing
    case JinjaValue::Kind::kString:
      if (!item.IsString()) {
        return TypeError(
            absl::StrCat("'in <string>' requires string as left operand, not ",
                         item.TypeName()));
      }
      return absl::StrContains(container.AsString(), item.AsString());
    case JinjaValue::Kind::kList:
      if (const std::string* error = container.DeferredError()) {
        return absl::InvalidArgumentError(*error);
      }
      for (const JinjaValue& v : container.AsList()) {
        if (v.Equals(item)) return true;
      }
      return false;
    case JinjaValue::Kind::kDict:
      if (!item.IsHashable()) {
        return TypeError(
            absl::StrCat("unhashable type: '", item.TypeName(), "'"));
      }
      return container.AsDict().Contains(item);
    default:
      return TypeError(absl::StrCat("argument of type '", container.TypeName(),
                                    "' is not iterable"));
  }
}

absl::StatusOr<JinjaValue> Interpreter::BinaryOp(const std::string& op,
                                                 const JinjaValue& a,
                                                 const JinjaValue& b) {
  if (op == "~") {
    std::string s = a.Str();
    const std::string t = b.Str();
    absl::Status st = CheckSize(s.size() + t.size());
    if (st.ok()) st = Copied(s.size() + t.size());
    if (!st.ok()) return st;
    return JinjaValue::String(s + t);
  }
  if (a.IsUndefined()) return UndefinedError(a);
  if (b.IsUndefined()) return UndefinedError(b);
  const bool numbers = a.IsNumber() && b.IsNumber();
  const bool floats = numbers && (a.IsFloat() || b.IsFloat());
  if (op == "+") {
    if (a.IsString() && b.IsString()) {
      const size_t bytes = a.AsString().size() + b.AsString().size();
      absl::Status st = CheckSize(bytes);
      if (st.ok()) st = Copied(bytes);
      if (!st.ok()) return st;
      // markupsafe: adding to a Markup escapes the plain operand.
      if (a.IsMarkup() || b.IsMarkup()) {
        return JinjaValue::Markup(
            (a.IsMarkup() ? a.AsString() : HtmlEscape(a.AsString())) +
            (b.IsMarkup() ? b.AsString() : HtmlEscape(b.AsString())));
      }
      return JinjaValue::String(a.AsString() + b.AsString());
    }
    if (a.IsSequence() && b.IsSequence() && a.IsTuple() == b.IsTuple()) {
      const size_t bytes = (a.AsList().size() + b.AsList().size()) * 16;
      absl::Status st = CheckSize(bytes);
      if (st.ok()) st = Copied(bytes);
      if (!st.ok()) return st;
      JinjaValue::ListData items = a.AsList();
      items.insert(items.end(), b.AsList().begin(), b.AsList().end());
      return a.IsTuple() ? JinjaValue::Tuple(std::move(items))
                         : JinjaValue::List(std::move(items));
    }
    if (floats) return JinjaValue::Float(a.AsDouble() + b.AsDouble());
    if (numbers) {
      int64_t r;
      if (__builtin_add_overflow(a.AsInt(), b.AsInt(), &r)) return Overflow();
      return JinjaValue::Int(r);
    }
    if (a.IsString()) {
      return TypeError(absl::StrCat("can only concatenate str (not \"",
                                    b.TypeName(), "\") to str"));
    }
    if (a.IsList()) {
      return TypeError(absl::StrCat("can only concatenate ", a.TypeName(),
                                    " (not \"", b.TypeName(), "\") to ",
                                    a.TypeName()));
    }
    return Unsupported(op, a, b);
  }
  if (op == "*") {
    const JinjaValue* seq = nullptr;
    const JinjaValue* count = nullptr;
    if ((a.IsString() || a.IsSequence()) && b.IsIntegral()) {
      seq = &a, count = &b;
    }
    if ((b.IsString() || b.IsSequence()) && a.IsIntegral()) {
      seq = &b, count = &a;
    }
    if (seq != nullptr) {
      const int64_t times = std::max<int64_t>(0, count->AsInt());
      const size_t unit =
          seq->IsString() ? seq->AsString().size() : seq->AsList().size() * 16;
      if (unit > 0 && times > limits_.max_bytes / int64_t(unit)) {
        return CheckSize(size_t(limits_.max_bytes) + 1);
      }
      if (absl::Status st = Copied(unit * size_t(times)); !st.ok()) return st;
      // An empty one repeated any number of times is empty (without the
      // loop: '' * 10**18 from a model file's template never ended).
      if (unit == 0) {
        return seq->IsString()  ? JinjaValue::String("")
               : seq->IsTuple() ? JinjaValue::Tuple({})
                                : JinjaValue::List({});
      }
      if (seq->IsString()) {
        std::string s;
        for (int64_t i = 0; i < times; ++i) s += seq->AsString();
        return JinjaValue::String(std::move(s));
      }
      JinjaValue::ListData items;
      for (int64_t i = 0; i < times; ++i) {
        items.insert(items.end(), seq->AsList().begin(), seq->AsList().end());
      }
      return seq->IsTuple() ? JinjaValue::Tuple(std::move(items))
                            : JinjaValue::List(std::move(items));
    }
    if (floats) return JinjaValue::Float(a.AsDouble() * b.AsDouble());
    if (numbers) {
      int64_t r;
      if (__builtin_mul_overflow(a.AsInt(), b.AsInt(), &r)) return Overflow();
      return JinjaValue::Int(r);
    }
    return Unsupported(op, a, b);
  }
  if (op == "%" && a.IsString()) {
    return absl::UnimplementedError(
        "printf-style string formatting (%) is not supported");
  }
  if (!numbers) return Unsupported(op, a, b);
  if (op == "-") {
    if (floats) return JinjaValue::Float(a.AsDouble() - b.AsDouble());
    int64_t r;
    if (__builtin_sub_overflow(a.AsInt(), b.AsInt(), &r)) return Overflow();
    return JinjaValue::Int(r);
  }
  if (op == "/" || op == "//" || op == "%") {
    if (b.AsDouble() == 0) {
      return absl::InvalidArgumentError(
          op == "/" ? "division by zero"
                    : (op == "//" ? "integer division or modulo by zero"
                                  : "integer modulo by zero"));
    }
    if (op == "/") return JinjaValue::Float(a.AsDouble() / b.AsDouble());
    if (floats) {
      const double x = a.AsDouble(), y = b.AsDouble();
      if (op == "//") return JinjaValue::Float(std::floor(x / y));
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0))) m += y;
      if (m == 0) m = std::copysign(0.0, y);  // Python: sign of the divisor
      return JinjaValue::Float(m);
    }
    if (a.AsInt() == INT64_MIN && b.AsInt() == -1) return Overflow();
    return JinjaValue::Int(op == "//" ? FloorDiv(a.AsInt(), b.AsInt())
                                      : FloorMod(a.AsInt(), b.AsInt()));
  }
  if (op == "**") {
    if (a.AsDouble() == 0 && b.AsDouble() < 0) {
      return absl::InvalidArgumentError(
          "0.0 cannot be raised to a negative power");
    }
    if (floats || b.AsInt() < 0) {
      return JinjaValue::Float(std::pow(a.AsDouble(), b.AsDouble()));
    }
    int64_t result = 1, base = a.AsInt(), exp = b.AsInt();
    while (exp > 0) {
      if (exp & 1) {
        if (__builtin_mul_overflow(result, base, &result)) return Overflow();
      }
      exp >>= 1;
      if (exp > 0 && __builtin_mul_overflow(base, base, &base)) {
        return Overflow();
      }
    }
    return JinjaValue::Int(result);
  }
  return absl::InternalError(absl::StrCat("unknown operator ", op));
}

}  // namespace spikeserve::jinja
