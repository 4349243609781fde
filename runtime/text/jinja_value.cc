#include "runtime/text/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/text/jinja_strings.h"
#include "runtime/text/utf8.h"

namespace spikeserve {
namespace {

// Nesting beyond this is refused (ToJson) or cut short (repr, ==): the
// caller's data may be deep, and namespaces can hold themselves.
constexpr int kMaxNesting = 256;

}  // namespace

JinjaValue JinjaValue::Undefined(std::string hint) {
  JinjaValue v;
  v.data_ = UndefinedTag{std::move(hint)};
  return v;
}
JinjaValue JinjaValue::None() {
  JinjaValue v;
  v.data_ = NoneTag{};
  return v;
}
JinjaValue JinjaValue::Bool(bool b) {
  JinjaValue v;
  v.data_ = b;
  return v;
}
JinjaValue JinjaValue::Int(int64_t i) {
  JinjaValue v;
  v.data_ = i;
  return v;
}
JinjaValue JinjaValue::Float(double f) {
  JinjaValue v;
  v.data_ = f;
  return v;
}
JinjaValue JinjaValue::String(std::string s) {
  JinjaValue v;
  v.data_ = std::move(s);
  return v;
}
JinjaValue JinjaValue::Markup(std::string s) {
  JinjaValue v = String(std::move(s));
  v.markup_ = true;
  return v;
}
JinjaValue JinjaValue::List(ListData items, ListFlavor flavor) {
  JinjaValue v;
  v.data_ = std::make_shared<const ListData>(std::move(items));
  v.flavor_ = flavor;
  return v;
}
JinjaValue JinjaValue::FailedGenerator(std::string error) {
  JinjaValue v = List({String(std::move(error))}, ListFlavor::kGenerator);
  v.deferred_error_ = true;
  return v;
}
JinjaValue JinjaValue::Tuple(ListData items) {
  return List(std::move(items), ListFlavor::kTuple);
}
JinjaValue JinjaValue::Dict(JinjaDict dict) {
  JinjaValue v;
  v.data_ = std::make_shared<const JinjaDict>(std::move(dict));
  return v;
}
JinjaValue JinjaValue::Namespace(JinjaDict attributes) {
  JinjaValue v;
  v.data_ = NamespacePtr{std::make_shared<JinjaDict>(std::move(attributes))};
  return v;
}
JinjaValue JinjaValue::Callable(
    std::string name,
    std::function<absl::StatusOr<JinjaValue>(JinjaCallArgs&)> fn) {
  JinjaValue v;
  v.data_ = std::make_shared<const JinjaCallable>(
      JinjaCallable{std::move(name), std::move(fn)});
  return v;
}

int64_t JinjaValue::AsInt() const {
  if (IsBool()) return AsBool() ? 1 : 0;
  return std::get<int64_t>(data_);
}

double JinjaValue::AsDouble() const {
  if (IsFloat()) return std::get<double>(data_);
  return double(AsInt());
}

bool JinjaValue::Truthy() const {
  switch (kind()) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return AsBool();
    case Kind::kInt:
      return AsInt() != 0;
    case Kind::kFloat:
      return AsDouble() != 0.0;
    case Kind::kString:
      return !AsString().empty();
    case Kind::kList:
      return IsGenerator() || !AsList().empty();
    case Kind::kDict:
      return !AsDict().empty();
    case Kind::kNamespace:
    case Kind::kCallable:
      return true;
  }
  return false;
}

std::string JinjaValue::TypeName() const {
  switch (kind()) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return IsMarkup() ? "Markup" : "str";
    case Kind::kList:
      switch (flavor_) {
        case ListFlavor::kList:
          return "list";
        case ListFlavor::kTuple:
          return "tuple";
        case ListFlavor::kGenerator:
          return "generator";
        case ListFlavor::kDictKeys:
          return "dict_keys";
        case ListFlavor::kDictValues:
          return "dict_values";
        case ListFlavor::kDictItems:
          return "dict_items";
      }
      return "list";
    case Kind::kDict:
      return "dict";
    case Kind::kNamespace:
      return "Namespace";
    case Kind::kCallable:
      return "function";
  }
  return "object";
}

namespace {

void AppendRepr(const JinjaValue& v, int depth, std::string* out);

void AppendDictBody(const JinjaDict& d, int depth, std::string* out) {
  out->push_back('{');
  bool first = true;
  for (const auto& [key, value] : d.items()) {
    if (!first) out->append(", ");
    first = false;
    AppendRepr(key, depth + 1, out);
    out->append(": ");
    AppendRepr(value, depth + 1, out);
  }
  out->push_back('}');
}

void AppendRepr(const JinjaValue& v, int depth, std::string* out) {
  if (depth > kMaxNesting) {
    out->append("...");
    return;
  }
  using Kind = JinjaValue::Kind;
  switch (v.kind()) {
    case Kind::kString:
      out->append(PythonStringRepr(v.AsString()));
      return;
    case Kind::kList: {
      if (v.IsGenerator()) {
        out->append("<generator object>");  // Python adds an address
        return;
      }
      const bool view = !v.IsSequence();
      if (view) absl::StrAppend(out, v.TypeName(), "(");
      const bool tuple = v.IsTuple();
      out->push_back(tuple ? '(' : '[');
      const auto& items = v.AsList();
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out->append(", ");
        AppendRepr(items[i], depth + 1, out);
      }
      if (tuple && items.size() == 1) out->push_back(',');
      out->push_back(tuple ? ')' : ']');
      if (view) out->push_back(')');
      return;
    }
    case Kind::kDict:
      AppendDictBody(v.AsDict(), depth, out);
      return;
    case Kind::kNamespace:
      out->append("<Namespace ");
      AppendDictBody(v.NamespaceAttributes(), depth, out);
      out->push_back('>');
      return;
    case Kind::kCallable:
      absl::StrAppend(out, "<function ", v.AsCallable().name, ">");
      return;
    default:
      out->append(v.Str());
  }
}

}  // namespace

std::string JinjaValue::Str() const {
  switch (kind()) {
    case Kind::kUndefined:
      return "";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return AsBool() ? "True" : "False";
    case Kind::kInt:
      return std::to_string(AsInt());
    case Kind::kFloat:
      return PythonFloatRepr(AsDouble());
    case Kind::kString:
      return AsString();
    default: {
      std::string out;
      AppendRepr(*this, 0, &out);
      return out;
    }
  }
}

std::string JinjaValue::Repr() const {
  if (IsUndefined()) return "Undefined";
  std::string out;
  AppendRepr(*this, 0, &out);
  return out;
}

namespace {

bool EqualsAt(const JinjaValue& a, const JinjaValue& b, int depth) {
  using Kind = JinjaValue::Kind;
  if (depth > kMaxNesting) return false;
  if (a.IsNumber() && b.IsNumber()) {
    if (a.IsFloat() || b.IsFloat()) return a.AsDouble() == b.AsDouble();
    return a.AsInt() == b.AsInt();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::kUndefined:
    case Kind::kNone:
      return true;
    case Kind::kString:
      return a.AsString() == b.AsString();
    case Kind::kList: {
      if (a.flavor() != b.flavor()) return false;
      if (a.IsGenerator()) return &a.AsList() == &b.AsList();
      const auto& x = a.AsList();
      const auto& y = b.AsList();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!EqualsAt(x[i], y[i], depth + 1)) return false;
      }
      return true;
    }
    case Kind::kDict: {
      const JinjaDict& x = a.AsDict();
      const JinjaDict& y = b.AsDict();
      if (x.size() != y.size()) return false;
      for (const auto& [key, value] : x.items()) {
        const JinjaValue* other = y.Find(key);
        if (other == nullptr || !EqualsAt(value, *other, depth + 1)) {
          return false;
        }
      }
      return true;
    }
    case Kind::kNamespace:
      return &a.NamespaceAttributes() == &b.NamespaceAttributes();
    case Kind::kCallable:
      return &a.AsCallable() == &b.AsCallable();
    default:
      return false;
  }
}

}  // namespace

bool JinjaValue::Equals(const JinjaValue& other) const {
  return EqualsAt(*this, other, 0);
}

absl::StatusOr<int> JinjaValue::Compare(const JinjaValue& other) const {
  if (IsNumber() && other.IsNumber()) {
    if (IsFloat() || other.IsFloat()) {
      const double a = AsDouble(), b = other.AsDouble();
      return a < b ? -1 : (a > b ? 1 : 0);
    }
    const int64_t a = AsInt(), b = other.AsInt();
    return a < b ? -1 : (a > b ? 1 : 0);
  }
  if (IsString() && other.IsString()) {
    // Byte order of UTF-8 is code point order, which Python compares.
    const int c = AsString().compare(other.AsString());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (IsSequence() && other.IsSequence() && IsTuple() == other.IsTuple()) {
    const auto& x = AsList();
    const auto& y = other.AsList();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (x[i].Equals(y[i])) continue;
      return x[i].Compare(y[i]);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  if (IsUndefined() || other.IsUndefined()) {
    return absl::InvalidArgumentError(
        IsUndefined() && !UndefinedHint().empty()
            ? UndefinedHint()
            : (other.IsUndefined() && !other.UndefinedHint().empty()
                   ? other.UndefinedHint()
                   : "undefined value in a comparison"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("comparison not supported between instances of '",
                   TypeName(), "' and '", other.TypeName(), "'"));
}

bool JinjaValue::IsHashable() const {
  switch (kind()) {
    case Kind::kList:
      if (IsGenerator()) return true;
      if (!IsTuple()) return false;
      for (const JinjaValue& v : AsList()) {
        if (!v.IsHashable()) return false;
      }
      return true;
    case Kind::kDict:
      return false;
    default:
      return true;
  }
}

absl::StatusOr<int64_t> JinjaValue::Length() const {
  switch (kind()) {
    case Kind::kUndefined:
      return 0;
    case Kind::kString:
      return jinja::CodePointCount(AsString());
    case Kind::kList:
      if (IsGenerator()) break;
      return int64_t(AsList().size());
    case Kind::kDict:
      return int64_t(AsDict().size());
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("object of type '", TypeName(), "' has no len()"));
}

namespace {

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(ch);  // ensure_ascii=False: UTF-8 as it is
        }
    }
  }
  out->push_back('"');
}

std::string JsonFloat(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f > 0 ? "Infinity" : "-Infinity";
  return PythonFloatRepr(f);
}

absl::Status NotSerializable(const JinjaValue& v) {
  return absl::InvalidArgumentError(absl::StrCat(
      "Object of type ", v.TypeName(), " is not JSON serializable"));
}

// A dict key as json.dumps writes it.
absl::StatusOr<std::string> JsonKey(const JinjaValue& key) {
  switch (key.kind()) {
    case JinjaValue::Kind::kString:
      return key.AsString();
    case JinjaValue::Kind::kInt:
      return std::to_string(key.AsInt());
    case JinjaValue::Kind::kBool:
      return std::string(key.AsBool() ? "true" : "false");
    case JinjaValue::Kind::kNone:
      return std::string("null");
    case JinjaValue::Kind::kFloat:
      return JsonFloat(key.AsDouble());
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "keys must be str, int, float, bool or None, not ", key.TypeName()));
  }
}

// ResourceExhausted once `bytes` of JSON pass options.max_bytes.
absl::Status JsonSizeCheck(const JinjaValue::JsonOptions& options,
                           size_t bytes) {
  if (options.max_bytes >= 0 && int64_t(bytes) > options.max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tojson output exceeds ", options.max_bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status AppendJson(const JinjaValue& v,
                        const JinjaValue::JsonOptions& options, int depth,
                        std::string* out) {
  if (depth > kMaxNesting) {
    return absl::InvalidArgumentError("tojson: value nested too deeply");
  }
  using Kind = JinjaValue::Kind;
  const bool indented = options.indent >= 0;
  const std::string item_sep = !options.item_separator.empty()
                                   ? options.item_separator
                                   : (indented ? "," : ", ");
  const std::string key_sep =
      !options.key_separator.empty() ? options.key_separator : ": ";
  auto newline = [&](int level) {
    if (!indented) return;
    out->push_back('\n');
    out->append(size_t(options.indent) * size_t(level), ' ');
  };
  // Checked before each item of a list or dict: every item adds a bounded
  // amount (its separator, indentation, key) beside what its own items add.
  auto too_big = [&] { return JsonSizeCheck(options, out->size()); };
  switch (v.kind()) {
    case Kind::kNone:
      out->append("null");
      return absl::OkStatus();
    case Kind::kBool:
      out->append(v.AsBool() ? "true" : "false");
      return absl::OkStatus();
    case Kind::kInt:
      out->append(std::to_string(v.AsInt()));
      return absl::OkStatus();
    case Kind::kFloat:
      out->append(JsonFloat(v.AsDouble()));
      return absl::OkStatus();
    case Kind::kString:
      AppendJsonString(v.AsString(), out);
      return absl::OkStatus();
    case Kind::kList: {
      if (!v.IsSequence()) return NotSerializable(v);
      const auto& items = v.AsList();
      if (items.empty()) {
        out->append("[]");
        return absl::OkStatus();
      }
      out->push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (absl::Status s = too_big(); !s.ok()) return s;
        if (i > 0) out->append(item_sep);
        newline(depth + 1);
        absl::Status s = AppendJson(items[i], options, depth + 1, out);
        if (!s.ok()) return s;
      }
      newline(depth);
      out->push_back(']');
      return absl::OkStatus();
    }
    case Kind::kDict: {
      const JinjaDict& dict = v.AsDict();
      if (dict.empty()) {
        out->append("{}");
        return absl::OkStatus();
      }
      std::vector<std::pair<std::string, const JinjaValue*>> entries;
      for (const auto& [key, value] : dict.items()) {
        absl::StatusOr<std::string> k = JsonKey(key);
        if (!k.ok()) return k.status();
        entries.emplace_back(*std::move(k), &value);
      }
      if (options.sort_keys) {
        std::stable_sort(
            entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      out->push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (absl::Status s = too_big(); !s.ok()) return s;
        if (i > 0) out->append(item_sep);
        newline(depth + 1);
        AppendJsonString(entries[i].first, out);
        out->append(key_sep);
        absl::Status s =
            AppendJson(*entries[i].second, options, depth + 1, out);
        if (!s.ok()) return s;
      }
      newline(depth);
      out->push_back('}');
      return absl::OkStatus();
    }
    default:
      return NotSerializable(v);
  }
}

}  // namespace

absl::StatusOr<std::string> JinjaValue::ToJson(
    const JsonOptions& options) const {
  std::string out;
  absl::Status s = AppendJson(*this, options, 0, &out);
  if (!s.ok()) return s;
  if (absl::Status big = JsonSizeCheck(options, out.size()); !big.ok()) {
    return big;
  }
  return out;
}

namespace {

// Kind-tagged key text: equal Python keys (1, 1.0, True) share one.
std::string KeyText(const JinjaValue& key) {
  switch (key.kind()) {
    case JinjaValue::Kind::kString:
      return absl::StrCat("s", key.AsString());
    case JinjaValue::Kind::kBool:
    case JinjaValue::Kind::kInt:
      return absl::StrCat("i", key.AsInt());
    case JinjaValue::Kind::kFloat: {
      const double f = key.AsDouble();
      if (std::floor(f) == f && std::fabs(f) < 9.2e18) {
        return absl::StrCat("i", int64_t(f));
      }
      return absl::StrCat("f", PythonFloatRepr(f));
    }
    case JinjaValue::Kind::kNone:
      return "n";
    case JinjaValue::Kind::kList: {
      std::string text = "t(";
      for (const JinjaValue& v : key.AsList()) {
        absl::StrAppend(&text, KeyText(v).size(), ":", KeyText(v));
      }
      return text;
    }
    default:
      return absl::StrCat("u", key.Repr());
  }
}

}  // namespace

void JinjaDict::Set(const JinjaValue& key, JinjaValue value) {
  auto [it, inserted] = index_.try_emplace(KeyText(key), items_.size());
  if (inserted) {
    items_.emplace_back(key, std::move(value));
  } else {
    items_[it->second].second = std::move(value);
  }
}

const JinjaValue* JinjaDict::Find(const JinjaValue& key) const {
  auto it = index_.find(KeyText(key));
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

const JinjaValue* JinjaDict::Find(absl::string_view key) const {
  auto it = index_.find(absl::StrCat("s", key));
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

std::string PythonFloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  // Shortest round-trip digits in scientific form: "d.ddde[+-]xx".
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), value,
                           std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exponent = std::stoi(sci.substr(e + 1));
  std::string out = sign;
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0.";
      out.append(size_t(-exponent - 1), '0');
      out += digits;
    } else if (size_t(exponent) + 1 >= digits.size()) {
      out += digits;
      out.append(size_t(exponent) + 1 - digits.size(), '0');
      out += ".0";
    } else {
      out += digits.substr(0, exponent + 1);
      out += ".";
      out += digits.substr(exponent + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) {
    out += ".";
    out += digits.substr(1);
  }
  char exp[16];
  std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+',
                std::abs(exponent));
  out += exp;
  return out;
}

namespace {

// str.isprintable() is false for these (control, format, separator and
// private-use code points); approximated by the ranges that occur in text.
bool IsPrintable(uint32_t cp) {
  if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return false;
  if ((cp >= 0x600 && cp <= 0x605) || cp == 0x61C || cp == 0x6DD ||
      cp == 0x70F || cp == 0x180E || cp == 0x1680) {
    return false;
  }
  if ((cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
      (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF ||
      (cp >= 0xFFF9 && cp <= 0xFFFB)) {
    return false;
  }
  if ((cp >= 0xD800 && cp <= 0xF8FF) || cp >= 0xF0000 ||
      (cp >= 0xE0000 && cp <= 0xE007F)) {
    return false;
  }
  return true;
}

}  // namespace

std::string PythonStringRepr(absl::string_view s) {
  const bool has_single = s.find('\'') != absl::string_view::npos;
  const bool has_double = s.find('"') != absl::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t start = pos;
    const uint32_t cp = jinja::DecodeUtf8(s, &pos);
    char buf[16];
    if (cp == uint32_t(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(char(cp));
    } else if (cp == '\n') {
      out.append("\\n");
    } else if (cp == '\r') {
      out.append("\\r");
    } else if (cp == '\t') {
      out.append("\\t");
    } else if (IsPrintable(cp)) {
      absl::StrAppend(&out, s.substr(start, pos - start));
    } else {
      if (cp <= 0xFF) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", cp);
      } else if (cp <= 0xFFFF) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
      } else {
        std::snprintf(buf, sizeof(buf), "\\U%08x", cp);
      }
      out.append(buf);
    }
  }
  out.push_back(quote);
  return out;
}

std::string HtmlEscape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out.append("&amp;");
        break;
      case '<':
        out.append("&lt;");
        break;
      case '>':
        out.append("&gt;");
        break;
      case '\'':
        out.append("&#39;");
        break;
      case '"':
        out.append("&#34;");
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

}  // namespace spikeserve
