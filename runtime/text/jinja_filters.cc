// jinja2's built-in filters that chat templates use, each following
// jinja2/filters.py (3.1) with autoescape off, plus `tojson` as the
// reference environment defines it (json.dumps, ensure_ascii=False).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "runtime/text/jinja_builtins.h"
#include "runtime/text/jinja_eval.h"
#include "runtime/text/jinja_strings.h"

namespace spikeserve::jinja {
namespace {

using Args = JinjaCallArgs;
using Result = absl::StatusOr<JinjaValue>;
using FilterFn = Result (*)(Interpreter&, const JinjaValue&, Args&);

// jinja2's map/select/unique/items/... are generators.
constexpr JinjaValue::ListFlavor kGenerator =
    JinjaValue::ListFlavor::kGenerator;

absl::Status TypeError(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

// soft_str: str(x), keeping a Markup a Markup.
JinjaValue SoftStr(const JinjaValue& v) {
  if (v.IsString()) return v;
  return JinjaValue::String(v.Str());
}

// A string result that keeps the input's Markup flag (Markup methods
// return Markup).
JinjaValue Like(const JinjaValue& input, std::string s) {
  return input.IsMarkup() ? JinjaValue::Markup(std::move(s))
                          : JinjaValue::String(std::move(s));
}

absl::StatusOr<ArgBinder> Params(const char* filter, Args& args,
                                 std::vector<std::string> names) {
  return ArgBinder::Bind(absl::StrCat("filter '", filter, "'"), args,
                         std::move(names));
}

// make_attrgetter: "a.b.0" looked up item-first (jinja2's getitem) part by
// part; an undefined result takes `fallback` when one is given.
absl::StatusOr<JinjaValue> GetPath(Interpreter& in, const JinjaValue& item,
                                   const JinjaValue& attribute,
                                   const JinjaValue* fallback) {
  JinjaValue v = item;
  if (attribute.IsIntegral()) {
    absl::StatusOr<JinjaValue> r = in.GetItem(v, attribute);
    if (!r.ok()) return r;
    v = *std::move(r);
  } else {
    for (absl::string_view part :
         absl::StrSplit(attribute.Str(), '.', absl::SkipEmpty())) {
      int64_t index;
      JinjaValue key = absl::SimpleAtoi(part, &index)
                           ? JinjaValue::Int(index)
                           : JinjaValue::String(std::string(part));
      absl::StatusOr<JinjaValue> r = in.GetItem(v, key);
      if (!r.ok()) return r;
      v = *std::move(r);
    }
  }
  if (v.IsUndefined() && fallback != nullptr) return *fallback;
  return v;
}

absl::StatusOr<JinjaValue::ListData> Items(Interpreter& in,
                                           const JinjaValue& v) {
  return in.Iterate(v);
}

// ---- string filters ----

Result Trim(Interpreter&, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b = Params("trim", args, {"chars"});
  if (!b.ok()) return b.status();
  std::optional<std::string> chars;
  if (const JinjaValue* c = b->Get(0); c != nullptr && !c->IsNone()) {
    chars = c->Str();
  }
  return Like(v, PyStrip(SoftStr(v).AsString(), chars, true, true));
}

Result Upper(Interpreter&, const JinjaValue& v, Args&) {
  return Like(v, PyUpper(SoftStr(v).AsString()));
}
Result Lower(Interpreter&, const JinjaValue& v, Args&) {
  return Like(v, PyLower(SoftStr(v).AsString()));
}
Result Capitalize(Interpreter&, const JinjaValue& v, Args&) {
  return Like(v, PyCapitalize(SoftStr(v).AsString()));
}

// jinja2's title: every word start (after -, whitespace, brackets) upper,
// the rest lower.
Result Title(Interpreter&, const JinjaValue& v, Args&) {
  const std::string s = SoftStr(v).AsString();
  std::string out;
  bool word_start = true;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t start = pos;
    const uint32_t cp = DecodeUtf8(s, &pos);
    const bool separator = cp == '-' || cp == '(' || cp == '{' || cp == '[' ||
                           cp == '<' || IsPythonSpace(cp);
    if (separator) {
      out.append(s, start, pos - start);
      word_start = true;
      continue;
    }
    const std::string one = s.substr(start, pos - start);
    out += word_start ? PyUpper(one) : PyLower(one);
    word_start = false;
  }
  return Like(v, std::move(out));
}

Result String(Interpreter&, const JinjaValue& v, Args&) { return SoftStr(v); }

Result Safe(Interpreter&, const JinjaValue& v, Args&) {
  return JinjaValue::Markup(v.Str());
}

Result Escape(Interpreter&, const JinjaValue& v, Args&) {
  if (v.IsMarkup()) return v;
  return JinjaValue::Markup(HtmlEscape(v.Str()));
}

Result Replace(Interpreter&, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b =
      Params("replace", args, {"old", "new", "count"});
  if (!b.ok()) return b.status();
  if (b->Get(0) == nullptr || b->Get(1) == nullptr) {
    return TypeError("filter 'replace' needs the old and new strings");
  }
  int64_t count = -1;
  if (const JinjaValue* c = b->Get(2); c != nullptr && !c->IsNone()) {
    if (!c->IsIntegral()) return TypeError("replace count must be an integer");
    count = c->AsInt();
  }
  return JinjaValue::String(
      PyReplace(v.Str(), b->Get(0)->Str(), b->Get(1)->Str(), count));
}

Result Indent(Interpreter&, const JinjaValue& v, Args& args) {
  // jinja2 appends "\n" to the input and splits it into lines: anything
  // but a string fails there.
  if (v.IsUndefined()) return UndefinedError(v);
  if (!v.IsString()) {
    return TypeError(
        absl::StrCat("filter 'indent' needs a string, not ", v.TypeName()));
  }
  absl::StatusOr<ArgBinder> b =
      Params("indent", args, {"width", "first", "blank"});
  if (!b.ok()) return b.status();
  const JinjaValue width = b->GetOr(0, JinjaValue::Int(4));
  std::string indention;
  if (width.IsString()) {
    indention = width.AsString();
  } else if (width.IsIntegral()) {
    indention.assign(size_t(std::clamp<int64_t>(width.AsInt(), 0, 1 << 16)),
                     ' ');
  } else {
    return TypeError("indent width must be an integer or a string");
  }
  const bool first = b->GetOr(1, JinjaValue::Bool(false)).Truthy();
  const bool blank = b->GetOr(2, JinjaValue::Bool(false)).Truthy();
  // jinja2 appends a newline so that splitlines keeps a trailing empty
  // line's indentation behaviour.
  std::vector<std::string> lines = PySplitLines(SoftStr(v).AsString() + "\n");
  std::string out;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += "\n" + indention;
      out += lines[i];
    }
  } else if (!lines.empty()) {
    out = lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += indention;
      out += lines[i];
    }
  }
  if (first) out = indention + out;
  return Like(v, std::move(out));
}

Result Center(Interpreter&, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b = Params("center", args, {"width"});
  if (!b.ok()) return b.status();
  const int64_t width = b->GetOr(0, JinjaValue::Int(80)).AsInt();
  const std::string s = v.Str();
  const int64_t n = CodePointCount(s);
  if (width <= n) return JinjaValue::String(s);
  const int64_t total = std::min<int64_t>(width - n, 1 << 16);
  // Python's str.center puts the odd space on the right unless n is odd.
  const int64_t left = total / 2 + (total & n & 1);
  return JinjaValue::String(std::string(size_t(left), ' ') + s +
                            std::string(size_t(total - left), ' '));
}

// len(re.findall(r"\w+", str(value))): runs of letters, digits and "_".
Result Wordcount(Interpreter&, const JinjaValue& v, Args&) {
  const std::string s = v.Str();
  int64_t words = 0;
  bool in_word = false;
  size_t pos = 0;
  while (pos < s.size()) {
    const uint32_t cp = DecodeUtf8(s, &pos);
    const bool word =
        cp == '_' || (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') ||
        (cp >= 'A' && cp <= 'Z') ||
        (cp >= 0xC0 && !IsPythonSpace(cp) && cp != 0xD7 && cp != 0xF7 &&
         !(cp >= 0x2000 && cp <= 0x2BFF) && !(cp >= 0x3000 && cp <= 0x303F));
    if (word && !in_word) ++words;
    in_word = word;
  }
  return JinjaValue::Int(words);
}

// ---- sequence filters ----

Result Length(Interpreter&, const JinjaValue& v, Args&) {
  absl::StatusOr<int64_t> n = v.Length();
  if (!n.ok()) return n.status();
  return JinjaValue::Int(*n);
}

Result List(Interpreter& in, const JinjaValue& v, Args&) {
  absl::StatusOr<JinjaValue::ListData> items = Items(in, v);
  if (!items.ok()) return items.status();
  return JinjaValue::List(*std::move(items));
}

Result First(Interpreter& in, const JinjaValue& v, Args&) {
  absl::StatusOr<JinjaValue::ListData> items = Items(in, v);
  if (!items.ok()) return items.status();
  if (items->empty()) {
    return JinjaValue::Undefined("No first item, sequence was empty.");
  }
  return items->front();
}

absl::Status NotReversible(const JinjaValue& v) {
  return TypeError(
      absl::StrCat("'", v.TypeName(), "' object is not reversible"));
}

Result Last(Interpreter& in, const JinjaValue& v, Args&) {
  if (v.IsGenerator()) return NotReversible(v);
  absl::StatusOr<JinjaValue::ListData> items = Items(in, v);
  if (!items.ok()) return items.status();
  if (items->empty()) {
    return JinjaValue::Undefined("No last item, sequence was empty.");
  }
  return items->back();
}

Result Reverse(Interpreter& in, const JinjaValue& v, Args&) {
  if (v.IsString()) {
    return JinjaValue::String(
        PySliceString(v.AsString(), std::nullopt, std::nullopt, -1));
  }
  absl::StatusOr<JinjaValue::ListData> items = Items(in, v);
  if (!items.ok()) return items.status();
  std::reverse(items->begin(), items->end());
  // reversed() fails on a generator; jinja2 then reverses list(value).
  if (v.IsGenerator()) return JinjaValue::List(*std::move(items));
  // A list_reverseiterator in Python: iterable once, no len(), no JSON.
  return JinjaValue::List(*std::move(items), kGenerator);
}

Result Join(Interpreter& in, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b = Params("join", args, {"d", "attribute"});
  if (!b.ok()) return b.status();
  const std::string sep = b->GetOr(0, JinjaValue::String("")).Str();
  absl::StatusOr<JinjaValue::ListData> items = Items(in, v);
  if (!items.ok()) return items.status();
  std::string out;
  for (size_t i = 0; i < items->size(); ++i) {
    JinjaValue item = (*items)[i];
    if (const JinjaValue* attr = b->Get(1);
        attr != nullptr && !attr->IsNone()) {
      absl::StatusOr<JinjaValue> a = GetPath(in, item, *attr, nullptr);
      if (!a.ok()) return a.status();
      item = *std::move(a);
    }
    if (i > 0) out += sep;
    out += item.Str();
    absl::Status s = in.CheckSize(out.size());
    if (!s.ok()) return s;
  }
  return JinjaValue::String(std::move(out));
}

Result ItemsFilter(Interpreter&, const JinjaValue& v, Args&) {
  if (v.IsUndefined()) return JinjaValue::List({}, kGenerator);
  if (!v.IsDict()) return TypeError("Can only get item pairs from a mapping.");
  JinjaValue::ListData out;
  for (const auto& [k, val] : v.AsDict().items()) {
    out.push_back(JinjaValue::Tuple({k, val}));
  }
  return JinjaValue::List(std::move(out), kGenerator);
}

Result Default(Interpreter&, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b =
      Params("default", args, {"default_value", "boolean"});
  if (!b.ok()) return b.status();
  const bool boolean = b->GetOr(1, JinjaValue::Bool(false)).Truthy();
  if (v.IsUndefined() || (boolean && !v.Truthy())) {
    return b->GetOr(0, JinjaValue::String(""));
  }
  return v;
}

Result Map(Interpreter& in, const JinjaValue& v, Args& args) {
  // jinja2 maps nothing over a falsy input (None included).
  if (!v.Truthy()) return JinjaValue::List({}, kGenerator);
  absl::StatusOr<JinjaValue::ListData> items = Items(in, v);
  if (!items.ok()) return items.status();
  JinjaValue::ListData out;
  if (args.positional.empty()) {
    // map(attribute='x', default=...)
    JinjaValue attribute, fallback;
    bool has_fallback = false;
    for (auto& [key, value] : args.keyword) {
      if (key == "attribute") {
        attribute = value;
      } else if (key == "default") {
        fallback = value;
        has_fallback = true;
      } else {
        return TypeError(
            absl::StrCat("map got an unexpected keyword '", key, "'"));
      }
    }
    if (attribute.IsUndefined()) {
      return TypeError("map needs a filter name or attribute=");
    }
    for (const JinjaValue& item : *items) {
      absl::StatusOr<JinjaValue> r =
          GetPath(in, item, attribute, has_fallback ? &fallback : nullptr);
      if (!r.ok()) return r;
      out.push_back(*std::move(r));
    }
    return JinjaValue::List(std::move(out), kGenerator);
  }
  // map('filter', args...)
  const JinjaValue name = args.positional[0];
  if (!name.IsString() || !IsKnownFilter(name.AsString())) {
    return TypeError(absl::StrCat("no filter named ", name.Repr()));
  }
  for (const JinjaValue& item : *items) {
    Args rest;
    rest.positional.assign(args.positional.begin() + 1, args.positional.end());
    rest.keyword = args.keyword;
    absl::StatusOr<JinjaValue> r = ApplyFilter(in, name.AsString(), item, rest);
    if (!r.ok()) return r;
    out.push_back(*std::move(r));
  }
  return JinjaValue::List(std::move(out), kGenerator);
}

// select/reject/selectattr/rejectattr.
Result SelectImpl(Interpreter& in, const JinjaValue& v, Args& args,
                  bool by_attribute, bool keep_if) {
  // jinja2 selects nothing from a falsy input (None included).
  if (!v.Truthy()) return JinjaValue::List({}, kGenerator);
  absl::StatusOr<JinjaValue::ListData> items = Items(in, v);
  if (!items.ok()) return items.status();
  size_t next = 0;
  JinjaValue attribute;
  if (by_attribute) {
    if (args.positional.empty()) return TypeError("missing attribute name");
    attribute = args.positional[next++];
  }
  std::string test;
  if (next < args.positional.size()) {
    const JinjaValue& t = args.positional[next++];
    if (!t.IsString() || !IsKnownTest(t.AsString())) {
      return TypeError(absl::StrCat("no test named ", t.Repr()));
    }
    test = t.AsString();
  }
  JinjaValue::ListData out;
  for (const JinjaValue& item : *items) {
    absl::Status s = in.Step();
    if (!s.ok()) return s;
    JinjaValue probe = item;
    if (by_attribute) {
      absl::StatusOr<JinjaValue> a = GetPath(in, item, attribute, nullptr);
      if (!a.ok()) return a;
      probe = *std::move(a);
    }
    bool passed;
    if (test.empty()) {
      passed = probe.Truthy();
    } else {
      Args rest;
      rest.positional.assign(args.positional.begin() + next,
                             args.positional.end());
      rest.keyword = args.keyword;
      absl::StatusOr<bool> r = ApplyTest(in, test, probe, rest);
      if (!r.ok()) return r.status();
      passed = *r;
    }
    if (passed == keep_if) out.push_back(item);
  }
  return JinjaValue::List(std::move(out), kGenerator);
}

Result Select(Interpreter& in, const JinjaValue& v, Args& args) {
  return SelectImpl(in, v, args, false, true);
}
Result Reject(Interpreter& in, const JinjaValue& v, Args& args) {
  return SelectImpl(in, v, args, false, false);
}
Result SelectAttr(Interpreter& in, const JinjaValue& v, Args& args) {
  return SelectImpl(in, v, args, true, true);
}
Result RejectAttr(Interpreter& in, const JinjaValue& v, Args& args) {
  return SelectImpl(in, v, args, true, false);
}

// The comparison key of unique/sort/min/max: lower-cased strings unless
// case_sensitive.
JinjaValue SortKey(const JinjaValue& v, bool case_sensitive) {
  if (!case_sensitive && v.IsString()) {
    return JinjaValue::String(PyLower(v.AsString()));
  }
  return v;
}

// The key unique, sort, min and max compare `item` by: the item, or its
// `attribute` path when one is given (not none), made case-insensitive
// unless `case_sensitive`.
absl::StatusOr<JinjaValue> ItemKey(Interpreter& in, const JinjaValue& item,
                                   const JinjaValue* attribute,
                                   bool case_sensitive) {
  JinjaValue key = item;
  if (attribute != nullptr && !attribute->IsNone()) {
    absl::StatusOr<JinjaValue> a = GetPath(in, item, *attribute, nullptr);
    if (!a.ok()) return a;
    key = *std::move(a);
  }
  return SortKey(key, case_sensitive);
}

Result Unique(Interpreter& in, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b =
      Params("unique", args, {"case_sensitive", "attribute"});
  if (!b.ok()) return b.status();
  const bool case_sensitive = b->GetOr(0, JinjaValue::Bool(false)).Truthy();
  absl::StatusOr<JinjaValue::ListData> items = Items(in, v);
  if (!items.ok()) return items.status();
  JinjaValue::ListData out, seen;
  for (const JinjaValue& item : *items) {
    absl::StatusOr<JinjaValue> k = ItemKey(in, item, b->Get(1), case_sensitive);
    if (!k.ok()) return k;
    JinjaValue key = *std::move(k);
    if (!key.IsHashable()) {
      return TypeError(absl::StrCat("unhashable type: '", key.TypeName(), "'"));
    }
    bool dup = false;
    for (const JinjaValue& s : seen) {
      if (s.Equals(key)) {
        dup = true;
        break;
      }
    }
    if (dup) continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return JinjaValue::List(std::move(out), kGenerator);
}

Result Sort(Interpreter& in, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b =
      Params("sort", args, {"reverse", "case_sensitive", "attribute"});
  if (!b.ok()) return b.status();
  const bool reverse = b->GetOr(0, JinjaValue::Bool(false)).Truthy();
  const bool case_sensitive = b->GetOr(1, JinjaValue::Bool(false)).Truthy();
  absl::StatusOr<JinjaValue::ListData> items = Items(in, v);
  if (!items.ok()) return items.status();
  std::vector<std::pair<JinjaValue, JinjaValue>> keyed;
  for (const JinjaValue& item : *items) {
    absl::StatusOr<JinjaValue> key =
        ItemKey(in, item, b->Get(2), case_sensitive);
    if (!key.ok()) return key.status();
    keyed.emplace_back(*std::move(key), item);
  }
  absl::Status error;
  std::stable_sort(
      keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
        absl::StatusOr<int> c =
            reverse ? y.first.Compare(x.first) : x.first.Compare(y.first);
        if (!c.ok()) {
          error = c.status();
          return false;
        }
        return *c < 0;
      });
  if (!error.ok()) return error;
  JinjaValue::ListData out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return JinjaValue::List(std::move(out));
}

Result DictSort(Interpreter&, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b =
      Params("dictsort", args, {"case_sensitive", "by", "reverse"});
  if (!b.ok()) return b.status();
  if (!v.IsDict()) return TypeError("dictsort needs a mapping");
  const bool case_sensitive = b->GetOr(0, JinjaValue::Bool(false)).Truthy();
  const bool by_value = b->GetOr(1, JinjaValue::String("key")).Str() == "value";
  const bool reverse = b->GetOr(2, JinjaValue::Bool(false)).Truthy();
  std::vector<JinjaDict::Item> items = v.AsDict().items();
  absl::Status error;
  std::stable_sort(
      items.begin(), items.end(), [&](const auto& x, const auto& y) {
        const JinjaValue& a = by_value ? x.second : x.first;
        const JinjaValue& c = by_value ? y.second : y.first;
        absl::StatusOr<int> r =
            SortKey(a, case_sensitive).Compare(SortKey(c, case_sensitive));
        if (!r.ok()) {
          error = r.status();
          return false;
        }
        return reverse ? *r > 0 : *r < 0;
      });
  if (!error.ok()) return error;
  JinjaValue::ListData out;
  for (auto& [k, val] : items) out.push_back(JinjaValue::Tuple({k, val}));
  return JinjaValue::List(std::move(out));
}

Result MinMax(Interpreter& in, const JinjaValue& v, Args& args, bool max) {
  absl::StatusOr<ArgBinder> b =
      Params(max ? "max" : "min", args, {"case_sensitive", "attribute"});
  if (!b.ok()) return b.status();
  const bool case_sensitive = b->GetOr(0, JinjaValue::Bool(false)).Truthy();
  absl::StatusOr<JinjaValue::ListData> items = Items(in, v);
  if (!items.ok()) return items.status();
  if (items->empty()) {
    return JinjaValue::Undefined("No aggregated item, sequence was empty.");
  }
  const JinjaValue* best = nullptr;
  JinjaValue best_key;
  for (const JinjaValue& item : *items) {
    absl::StatusOr<JinjaValue> k = ItemKey(in, item, b->Get(1), case_sensitive);
    if (!k.ok()) return k;
    JinjaValue key = *std::move(k);
    if (best != nullptr) {
      absl::StatusOr<int> c = key.Compare(best_key);
      if (!c.ok()) return c.status();
      if (max ? *c <= 0 : *c >= 0) continue;
    }
    best = &item;
    best_key = key;
  }
  return *best;
}

Result Max(Interpreter& in, const JinjaValue& v, Args& args) {
  return MinMax(in, v, args, true);
}
Result Min(Interpreter& in, const JinjaValue& v, Args& args) {
  return MinMax(in, v, args, false);
}

Result Sum(Interpreter& in, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b = Params("sum", args, {"attribute", "start"});
  if (!b.ok()) return b.status();
  JinjaValue total = b->GetOr(1, JinjaValue::Int(0));
  absl::StatusOr<JinjaValue::ListData> items = Items(in, v);
  if (!items.ok()) return items.status();
  for (const JinjaValue& item : *items) {
    JinjaValue x = item;
    if (const JinjaValue* attr = b->Get(0);
        attr != nullptr && !attr->IsNone()) {
      absl::StatusOr<JinjaValue> a = GetPath(in, item, *attr, nullptr);
      if (!a.ok()) return a;
      x = *std::move(a);
    }
    absl::StatusOr<JinjaValue> r = in.BinaryOp("+", total, x);
    if (!r.ok()) return r;
    total = *std::move(r);
  }
  return total;
}

Result Batch(Interpreter& in, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b =
      Params("batch", args, {"linecount", "fill_with"});
  if (!b.ok()) return b.status();
  const JinjaValue* count = b->Get(0);
  if (count == nullptr || !count->IsIntegral() || count->AsInt() <= 0) {
    return TypeError("batch needs a positive line count");
  }
  absl::StatusOr<JinjaValue::ListData> items = Items(in, v);
  if (!items.ok()) return items.status();
  JinjaValue::ListData out, row;
  for (const JinjaValue& item : *items) {
    row.push_back(item);
    if (int64_t(row.size()) == count->AsInt()) {
      out.push_back(JinjaValue::List(std::move(row)));
      row.clear();
    }
  }
  if (!row.empty()) {
    if (const JinjaValue* fill = b->Get(1);
        fill != nullptr && !fill->IsNone()) {
      while (int64_t(row.size()) < count->AsInt()) row.push_back(*fill);
    }
    out.push_back(JinjaValue::List(std::move(row)));
  }
  return JinjaValue::List(std::move(out), kGenerator);
}

// ---- numbers ----

Result Int(Interpreter&, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b = Params("int", args, {"default", "base"});
  if (!b.ok()) return b.status();
  const JinjaValue fallback = b->GetOr(0, JinjaValue::Int(0));
  if (v.IsUndefined()) return UndefinedError(v);  // int(Undefined) raises
  if (v.IsIntegral()) return JinjaValue::Int(v.AsInt());
  if (v.IsFloat()) {
    const double f = v.AsDouble();
    if (!std::isfinite(f) || std::fabs(f) > 9.2e18) return fallback;
    return JinjaValue::Int(int64_t(f));
  }
  if (v.IsString()) {
    const std::string s = PyStrip(v.AsString(), std::nullopt, true, true);
    int64_t i;
    if (absl::SimpleAtoi(s, &i)) return JinjaValue::Int(i);
    double f;
    if (absl::SimpleAtod(s, &f) && std::isfinite(f) && std::fabs(f) < 9.2e18) {
      return JinjaValue::Int(int64_t(f));
    }
  }
  return fallback;
}

Result Float(Interpreter&, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b = Params("float", args, {"default"});
  if (!b.ok()) return b.status();
  if (v.IsUndefined()) return UndefinedError(v);  // float(Undefined) raises
  if (v.IsNumber()) return JinjaValue::Float(v.AsDouble());
  if (v.IsString()) {
    double f;
    if (absl::SimpleAtod(PyStrip(v.AsString(), std::nullopt, true, true), &f)) {
      return JinjaValue::Float(f);
    }
  }
  return b->GetOr(0, JinjaValue::Float(0.0));
}

Result Abs(Interpreter&, const JinjaValue& v, Args&) {
  if (v.IsFloat()) return JinjaValue::Float(std::fabs(v.AsDouble()));
  if (v.IsIntegral()) {
    if (v.AsInt() == INT64_MIN) return absl::InvalidArgumentError("overflow");
    return JinjaValue::Int(std::llabs(v.AsInt()));
  }
  return TypeError(
      absl::StrCat("bad operand type for abs(): '", v.TypeName(), "'"));
}

Result Round(Interpreter&, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b = Params("round", args, {"precision", "method"});
  if (!b.ok()) return b.status();
  if (!v.IsNumber()) return TypeError("round needs a number");
  const int64_t precision = b->GetOr(0, JinjaValue::Int(0)).AsInt();
  const std::string method = b->GetOr(1, JinjaValue::String("common")).Str();
  const double scale = std::pow(10.0, double(precision));
  const double x = v.AsDouble() * scale;
  double r;
  if (method == "common") {
    if (v.IsIntegral()) return JinjaValue::Int(v.AsInt());  // round(int, n)
    r = std::nearbyint(x);  // half to even, as Python's round
  } else if (method == "ceil") {
    r = std::ceil(x);
  } else if (method == "floor") {
    r = std::floor(x);
  } else {
    return TypeError("method must be common, ceil or floor");
  }
  return JinjaValue::Float(r / scale);
}

// ---- JSON ----

Result ToJson(Interpreter& in, const JinjaValue& v, Args& args) {
  absl::StatusOr<ArgBinder> b =
      Params("tojson", args, {"indent", "separators", "sort_keys"});
  if (!b.ok()) return b.status();
  JinjaValue::JsonOptions options;
  options.max_bytes = in.max_bytes();
  if (const JinjaValue* indent = b->Get(0);
      indent != nullptr && !indent->IsNone()) {
    if (!indent->IsIntegral()) return TypeError("tojson indent must be an int");
    options.indent = int(std::clamp<int64_t>(indent->AsInt(), 0, 64));
  }
  if (const JinjaValue* seps = b->Get(1); seps != nullptr && !seps->IsNone()) {
    if (!seps->IsList() || seps->AsList().size() != 2 ||
        !seps->AsList()[0].IsString() || !seps->AsList()[1].IsString()) {
      return TypeError("tojson separators must be a pair of strings");
    }
    options.item_separator = seps->AsList()[0].AsString();
    options.key_separator = seps->AsList()[1].AsString();
  }
  options.sort_keys = b->GetOr(2, JinjaValue::Bool(false)).Truthy();
  absl::StatusOr<std::string> json = v.ToJson(options);
  if (!json.ok()) return json.status();
  if (absl::Status s = in.Charge(1 + int64_t(json->size() / 4)); !s.ok()) {
    return s;
  }
  return JinjaValue::String(*std::move(json));
}

// jinja2's generator filters run when their result is consumed: an error
// on the way (a non-iterable input, a test that fails on an item) is
// deferred to that point, as a FailedGenerator.
template <FilterFn kFilter>
Result Lazy(Interpreter& in, const JinjaValue& v, Args& args) {
  Result r = kFilter(in, v, args);
  if (r.ok() || r.status().code() != absl::StatusCode::kInvalidArgument) {
    return r;
  }
  return JinjaValue::FailedGenerator(std::string(r.status().message()));
}

const absl::flat_hash_map<std::string, FilterFn>& Filters() {
  static const auto* const filters =
      new absl::flat_hash_map<std::string, FilterFn>{
          {"abs", Abs},
          {"batch", Lazy<Batch>},
          {"capitalize", Capitalize},
          {"center", Center},
          {"count", Length},
          {"d", Default},
          {"default", Default},
          {"dictsort", DictSort},
          {"e", Escape},
          {"escape", Escape},
          {"first", First},
          {"float", Float},
          {"indent", Indent},
          {"int", Int},
          {"items", Lazy<ItemsFilter>},
          {"join", Join},
          {"last", Last},
          {"length", Length},
          {"list", List},
          {"lower", Lower},
          {"map", Lazy<Map>},
          {"max", Max},
          {"min", Min},
          {"reject", Lazy<Reject>},
          {"rejectattr", Lazy<RejectAttr>},
          {"replace", Replace},
          {"reverse", Reverse},
          {"round", Round},
          {"safe", Safe},
          {"select", Lazy<Select>},
          {"selectattr", Lazy<SelectAttr>},
          {"sort", Sort},
          {"string", String},
          {"sum", Sum},
          {"title", Title},
          {"tojson", ToJson},
          {"trim", Trim},
          {"unique", Lazy<Unique>},
          {"upper", Upper},
          {"wordcount", Wordcount},
      };
  return *filters;
}

}  // namespace

bool IsKnownFilter(absl::string_view name) { return Filters().contains(name); }

absl::StatusOr<JinjaValue> ApplyFilter(Interpreter& interpreter,
                                       absl::string_view name,
                                       const JinjaValue& input,
                                       JinjaCallArgs& args) {
  auto it = Filters().find(name);
  if (it == Filters().end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no filter named '", name, "'"));
  }
  // Filters that need a value fail on undefined input, as jinja2's do when
  // they touch it; those that accept anything handle it themselves.
  return it->second(interpreter, input, args);
}

}  // namespace spikeserve::jinja
