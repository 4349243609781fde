// Python methods of str, dict and list that templates call
// (`content.split('</think>')`, `param.get('type', 'any')`, `tool.items()`),
// and the argument binder shared with the filters.
#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "runtime/text/jinja_builtins.h"
#include "runtime/text/jinja_strings.h"

namespace spikeserve::jinja {

absl::StatusOr<ArgBinder> ArgBinder::Bind(const std::string& what,
                                          JinjaCallArgs& args,
                                          std::vector<std::string> params) {
  ArgBinder binder;
  binder.bound_.resize(params.size());
  if (args.positional.size() > params.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " takes at most ", params.size(),
                     " argument(s), got ", args.positional.size()));
  }
  for (size_t i = 0; i < args.positional.size(); ++i) {
    binder.bound_[i] = args.positional[i];
  }
  for (auto& [key, value] : args.keyword) {
    auto it = std::find(params.begin(), params.end(), key);
    if (it == params.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " got an unexpected keyword argument '", key, "'"));
    }
    const size_t i = size_t(it - params.begin());
    if (binder.bound_[i].has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " got multiple values for argument '", key, "'"));
    }
    binder.bound_[i] = value;
  }
  return binder;
}

namespace {

using Args = JinjaCallArgs;
using Result = absl::StatusOr<JinjaValue>;

absl::Status TypeError(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

// An optional str argument (None = unset).
absl::StatusOr<std::optional<std::string>> OptionalString(
    const JinjaValue* v, absl::string_view what) {
  if (v == nullptr || v->IsNone()) return std::optional<std::string>();
  if (!v->IsString()) {
    return TypeError(
        absl::StrCat(what, " must be str or None, not ", v->TypeName()));
  }
  return std::optional<std::string>(v->AsString());
}

absl::StatusOr<std::string> RequireString(const JinjaValue* v,
                                          absl::string_view what) {
  if (v == nullptr) return TypeError(absl::StrCat(what, " is required"));
  if (!v->IsString()) {
    return TypeError(absl::StrCat(what, " must be str, not ", v->TypeName()));
  }
  return v->AsString();
}

absl::StatusOr<int64_t> OptionalInt(const JinjaValue* v, int64_t fallback) {
  if (v == nullptr || v->IsNone()) return fallback;
  if (!v->IsIntegral()) {
    return TypeError(absl::StrCat("'", v->TypeName(),
                                  "' object cannot be interpreted as an "
                                  "integer"));
  }
  return v->AsInt();
}

JinjaValue StringList(std::vector<std::string> parts) {
  JinjaValue::ListData items;
  items.reserve(parts.size());
  for (std::string& p : parts)
    items.push_back(JinjaValue::String(std::move(p)));
  return JinjaValue::List(std::move(items));
}

using Method = std::function<Result(const JinjaValue& self, Args& args)>;

// Wraps a method body into a bound callable for `self`.
JinjaValue Bind(const JinjaValue& self, const std::string& name,
                Method method) {
  return JinjaValue::Callable(
      absl::StrCat(self.TypeName(), ".", name),
      [self, method](Args& args) { return method(self, args); });
}

// startswith/endswith: a str or a tuple of str.
Result AffixTest(const JinjaValue& self, Args& args, bool start,
                 const std::string& name) {
  absl::StatusOr<ArgBinder> b = ArgBinder::Bind(name, args, {"affix"});
  if (!b.ok()) return b.status();
  const JinjaValue* affix = b->Get(0);
  if (affix == nullptr) return TypeError(name + " takes at least 1 argument");
  std::vector<std::string> options;
  if (affix->IsString()) {
    options.push_back(affix->AsString());
  } else if (affix->IsTuple()) {
    for (const JinjaValue& v : affix->AsList()) {
      if (!v.IsString()) return TypeError(name + ": tuple items must be str");
      options.push_back(v.AsString());
    }
  } else {
    return TypeError(absl::StrCat(name,
                                  " first arg must be str or a tuple "
                                  "of str, not ",
                                  affix->TypeName()));
  }
  const std::string& s = self.AsString();
  for (const std::string& o : options) {
    if (start ? absl::StartsWith(s, o) : absl::EndsWith(s, o)) {
      return JinjaValue::Bool(true);
    }
  }
  return JinjaValue::Bool(false);
}

template <typename Pred>
JinjaValue AllCodePoints(const std::string& s, Pred pred) {
  if (s.empty()) return JinjaValue::Bool(false);
  size_t pos = 0;
  while (pos < s.size()) {
    if (!pred(DecodeUtf8(s, &pos))) return JinjaValue::Bool(false);
  }
  return JinjaValue::Bool(true);
}

absl::StatusOr<std::optional<JinjaValue>> StringMethod(
    const JinjaValue& self, const std::string& name) {
  auto no_args = [name](std::function<JinjaValue(const std::string&)> f) {
    return [name, f](const JinjaValue& s, Args& args) -> Result {
      if (!args.positional.empty() || !args.keyword.empty()) {
        return TypeError(absl::StrCat("str.", name, "() takes no arguments"));
      }
      return f(s.AsString());
    };
  };
  Method m;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    m = [name](const JinjaValue& s, Args& args) -> Result {
      absl::StatusOr<ArgBinder> b = ArgBinder::Bind(name, args, {"chars"});
      if (!b.ok()) return b.status();
      absl::StatusOr<std::optional<std::string>> chars =
          OptionalString(b->Get(0), "strip arg");
      if (!chars.ok()) return chars.status();
      return JinjaValue::String(
          PyStrip(s.AsString(), *chars, name != "rstrip", name != "lstrip"));
    };
  } else if (name == "split" || name == "rsplit") {
    m = [name](const JinjaValue& s, Args& args) -> Result {
      absl::StatusOr<ArgBinder> b =
          ArgBinder::Bind(name, args, {"sep", "maxsplit"});
      if (!b.ok()) return b.status();
      absl::StatusOr<std::optional<std::string>> sep =
          OptionalString(b->Get(0), "sep");
      if (!sep.ok()) return sep.status();
      if (sep->has_value() && (*sep)->empty()) {
        return absl::InvalidArgumentError("empty separator");
      }
      absl::StatusOr<int64_t> maxsplit = OptionalInt(b->Get(1), -1);
      if (!maxsplit.ok()) return maxsplit.status();
      return StringList(name == "split"
                            ? PySplit(s.AsString(), *sep, *maxsplit)
                            : PyRSplit(s.AsString(), *sep, *maxsplit));
    };
  } else if (name == "splitlines") {
    m = no_args(
        [](const std::string& s) { return StringList(PySplitLines(s)); });
  } else if (name == "startswith" || name == "endswith") {
    m = [name](const JinjaValue& s, Args& args) {
      return AffixTest(s, args, name == "startswith", name);
    };
  } else if (name == "lower") {
    m = no_args(
        [](const std::string& s) { return JinjaValue::String(PyLower(s)); });
  } else if (name == "upper") {
    m = no_args(
        [](const std::string& s) { return JinjaValue::String(PyUpper(s)); });
  } else if (name == "title") {
    m = no_args(
        [](const std::string& s) { return JinjaValue::String(PyTitle(s)); });
  } else if (name == "capitalize") {
    m = no_args([](const std::string& s) {
      return JinjaValue::String(PyCapitalize(s));
    });
  } else if (name == "isdigit" || name == "isnumeric" || name == "isdecimal") {
    m = no_args([](const std::string& s) {
      return AllCodePoints(s, [](uint32_t c) { return c >= '0' && c <= '9'; });
    });
  } else if (name == "isalpha") {
    m = no_args([](const std::string& s) {
      return AllCodePoints(s, [](uint32_t c) { return IsCased(c); });
    });
  } else if (name == "isalnum") {
    m = no_args([](const std::string& s) {
      return AllCodePoints(
          s, [](uint32_t c) { return IsCased(c) || (c >= '0' && c <= '9'); });
    });
  } else if (name == "isspace") {
    m = no_args(
        [](const std::string& s) { return AllCodePoints(s, IsPythonSpace); });
  } else if (name == "islower" || name == "isupper") {
    const bool lower = name == "islower";
    m = no_args([lower](const std::string& s) {
      bool cased = false;
      size_t pos = 0;
      while (pos < s.size()) {
        const uint32_t c = DecodeUtf8(s, &pos);
        if (!IsCased(c)) continue;
        cased = true;
        if ((lower ? ToLower(c) : ToUpper(c)) != c) {
          return JinjaValue::Bool(false);
        }
      }
      return JinjaValue::Bool(cased);
    });
  } else if (name == "replace") {
    m = [](const JinjaValue& s, Args& args) -> Result {
      absl::StatusOr<ArgBinder> b =
          ArgBinder::Bind("replace", args, {"old", "new", "count"});
      if (!b.ok()) return b.status();
      absl::StatusOr<std::string> from = RequireString(b->Get(0), "old");
      if (!from.ok()) return from.status();
      absl::StatusOr<std::string> to = RequireString(b->Get(1), "new");
      if (!to.ok()) return to.status();
      absl::StatusOr<int64_t> count = OptionalInt(b->Get(2), -1);
      if (!count.ok()) return count.status();
      return JinjaValue::String(PyReplace(s.AsString(), *from, *to, *count));
    };
  } else if (name == "find" || name == "rfind" || name == "index" ||
             name == "rindex" || name == "count") {
    m = [name](const JinjaValue& s, Args& args) -> Result {
      absl::StatusOr<ArgBinder> b = ArgBinder::Bind(name, args, {"sub"});
      if (!b.ok()) return b.status();
      absl::StatusOr<std::string> sub = RequireString(b->Get(0), "sub");
      if (!sub.ok()) return sub.status();
      const std::string& text = s.AsString();
      if (name == "count") {
        if (sub->empty()) return JinjaValue::Int(CodePointCount(text) + 1);
        int64_t n = 0;
        for (size_t at = text.find(*sub); at != std::string::npos;
             at = text.find(*sub, at + sub->size())) {
          ++n;
        }
        return JinjaValue::Int(n);
      }
      const bool reverse = name[0] == 'r';
      const size_t at = reverse ? text.rfind(*sub) : text.find(*sub);
      if (at == std::string::npos) {
        if (name == "index" || name == "rindex") {
          return absl::InvalidArgumentError("substring not found");
        }
        return JinjaValue::Int(-1);
      }
      return JinjaValue::Int(CodePointCount(text.substr(0, at)));
    };
  } else if (name == "join") {
    m = [](const JinjaValue& s, Args& args) -> Result {
      absl::StatusOr<ArgBinder> b = ArgBinder::Bind("join", args, {"iterable"});
      if (!b.ok()) return b.status();
      const JinjaValue* items = b->Get(0);
      if (items == nullptr || !items->IsList()) {
        return TypeError("str.join() needs a list of str");
      }
      std::string out;
      for (size_t i = 0; i < items->AsList().size(); ++i) {
        const JinjaValue& v = items->AsList()[i];
        if (!v.IsString()) {
          return TypeError(absl::StrCat("sequence item ", i,
                                        ": expected str instance, ",
                                        v.TypeName(), " found"));
        }
        if (i > 0) out += s.AsString();
        out += v.AsString();
      }
      return JinjaValue::String(std::move(out));
    };
  } else if (name == "removeprefix" || name == "removesuffix") {
    m = [name](const JinjaValue& s, Args& args) -> Result {
      absl::StatusOr<ArgBinder> b = ArgBinder::Bind(name, args, {"affix"});
      if (!b.ok()) return b.status();
      absl::StatusOr<std::string> affix = RequireString(b->Get(0), "affix");
      if (!affix.ok()) return affix.status();
      absl::string_view text = s.AsString();
      if (name == "removeprefix") {
        absl::ConsumePrefix(&text, *affix);
      } else {
        absl::ConsumeSuffix(&text, *affix);
      }
      return JinjaValue::String(std::string(text));
    };
  } else if (name == "zfill" || name == "ljust" || name == "rjust" ||
             name == "center") {
    m = [name](const JinjaValue& s, Args& args) -> Result {
      absl::StatusOr<ArgBinder> b =
          ArgBinder::Bind(name, args, {"width", "fillchar"});
      if (!b.ok()) return b.status();
      absl::StatusOr<int64_t> width = OptionalInt(b->Get(0), 0);
      if (!width.ok()) return width.status();
      const std::string fill =
          name == "zfill" ? "0" : b->GetOr(1, JinjaValue::String(" ")).Str();
      if (CodePointCount(fill) != 1) {
        return TypeError("the fill character must be exactly one character");
      }
      const std::string& text = s.AsString();
      const int64_t n = CodePointCount(text);
      const int64_t pad = std::min<int64_t>(*width, 1 << 20) - n;
      if (pad <= 0) return JinjaValue::String(text);
      auto repeat = [&](int64_t k) {
        std::string r;
        for (int64_t i = 0; i < k; ++i) r += fill;
        return r;
      };
      if (name == "ljust") return JinjaValue::String(text + repeat(pad));
      if (name == "rjust") return JinjaValue::String(repeat(pad) + text);
      if (name == "center") {
        const int64_t left = pad / 2 + (pad & n & 1);
        return JinjaValue::String(repeat(left) + text + repeat(pad - left));
      }
      // zfill keeps a leading sign in front of the zeros.
      if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
        return JinjaValue::String(text.substr(0, 1) + repeat(pad) +
                                  text.substr(1));
      }
      return JinjaValue::String(repeat(pad) + text);
    };
  } else {
    static const absl::flat_hash_set<std::string>* const kPythonStrMethods =
        new absl::flat_hash_set<std::string>{
            "casefold",   "encode",    "expandtabs",   "format",
            "format_map", "isascii",   "isidentifier", "isprintable",
            "istitle",    "maketrans", "partition",    "rpartition",
            "swapcase",   "translate"};
    if (kPythonStrMethods->contains(name)) {
      return absl::UnimplementedError(
          absl::StrCat("str method '", name, "' is not supported"));
    }
    return std::optional<JinjaValue>();
  }
  return std::optional<JinjaValue>(Bind(self, name, std::move(m)));
}

absl::StatusOr<std::optional<JinjaValue>> DictMethod(const JinjaValue& self,
                                                     const std::string& name) {
  Method m;
  if (name == "items" || name == "keys" || name == "values") {
    m = [name](const JinjaValue& d, Args& args) -> Result {
      if (!args.positional.empty() || !args.keyword.empty()) {
        return TypeError(absl::StrCat("dict.", name, "() takes no arguments"));
      }
      JinjaValue::ListData out;
      for (const auto& [k, v] : d.AsDict().items()) {
        if (name == "items") {
          out.push_back(JinjaValue::Tuple({k, v}));
        } else {
          out.push_back(name == "keys" ? k : v);
        }
      }
      return JinjaValue::List(
          std::move(out), name == "items" ? JinjaValue::ListFlavor::kDictItems
                          : name == "keys"
                              ? JinjaValue::ListFlavor::kDictKeys
                              : JinjaValue::ListFlavor::kDictValues);
    };
  } else if (name == "get") {
    m = [](const JinjaValue& d, Args& args) -> Result {
      absl::StatusOr<ArgBinder> b =
          ArgBinder::Bind("dict.get", args, {"key", "default"});
      if (!b.ok()) return b.status();
      if (b->Get(0) == nullptr)
        return TypeError("get expected at least 1 argument");
      if (!b->Get(0)->IsHashable()) {
        return TypeError(
            absl::StrCat("unhashable type: '", b->Get(0)->TypeName(), "'"));
      }
      if (const JinjaValue* v = d.AsDict().Find(*b->Get(0))) return *v;
      return b->GetOr(1, JinjaValue::None());
    };
  } else if (name == "copy") {
    m = [](const JinjaValue& d, Args&) -> Result { return d; };
  } else if (name == "pop" || name == "popitem" || name == "setdefault" ||
             name == "update" || name == "clear" || name == "fromkeys") {
    // The immutable sandbox hides mutating methods (an unsafe undefined).
    return std::optional<JinjaValue>(JinjaValue::Undefined(absl::StrCat(
        "access to attribute '", name, "' of 'dict' object is unsafe")));
  } else {
    return std::optional<JinjaValue>();
  }
  return std::optional<JinjaValue>(Bind(self, name, std::move(m)));
}

absl::StatusOr<std::optional<JinjaValue>> ListMethod(const JinjaValue& self,
                                                     const std::string& name) {
  Method m;
  if (name == "index" || name == "count") {
    m = [name](const JinjaValue& l, Args& args) -> Result {
      absl::StatusOr<ArgBinder> b = ArgBinder::Bind(name, args, {"value"});
      if (!b.ok()) return b.status();
      if (b->Get(0) == nullptr) return TypeError(name + " takes one argument");
      int64_t count = 0;
      const auto& items = l.AsList();
      for (size_t i = 0; i < items.size(); ++i) {
        if (!items[i].Equals(*b->Get(0))) continue;
        if (name == "index") return JinjaValue::Int(int64_t(i));
        ++count;
      }
      if (name == "index") {
        return absl::InvalidArgumentError(
            absl::StrCat(b->Get(0)->Repr(), " is not in list"));
      }
      return JinjaValue::Int(count);
    };
  } else if (name == "copy" && !self.IsTuple()) {
    m = [](const JinjaValue& l, Args&) -> Result { return l; };
  } else if (name == "append" || name == "extend" || name == "insert" ||
             name == "pop" || name == "remove" || name == "reverse" ||
             name == "sort" || name == "clear") {
    return std::optional<JinjaValue>(JinjaValue::Undefined(
        absl::StrCat("access to attribute '", name, "' of '", self.TypeName(),
                     "' object is unsafe")));
  } else {
    return std::optional<JinjaValue>();
  }
  return std::optional<JinjaValue>(Bind(self, name, std::move(m)));
}

}  // namespace

absl::StatusOr<std::optional<JinjaValue>> GetMethod(const JinjaValue& obj,
                                                    const std::string& name) {
  if (obj.IsString()) return StringMethod(obj, name);
  if (obj.IsDict()) return DictMethod(obj, name);
  if (obj.IsSequence()) return ListMethod(obj, name);
  return std::optional<JinjaValue>();
}

}  // namespace spikeserve::jinja
