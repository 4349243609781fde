// JinjaValue: the values a chat template computes with, modelled on the
// Python objects jinja2 hands around (None, bool, int, float, str, list,
// tuple, dict, jinja2's Undefined and Namespace, callables). Templates are
// held to jinja2 byte for byte, so the Python behaviour that shows in the
// output is reproduced here: str() and repr() of every kind, float repr,
// truthiness, ==, ordering, and json.dumps for the tojson filter.
//
// Values are cheap to copy: lists, dicts and callables are shared and
// immutable once built (the reference environment is jinja2's
// ImmutableSandboxedEnvironment, where templates cannot mutate them). A
// namespace is the one mutable kind and is shared by reference, as in Python.
// Not thread-safe to mutate; a finished context can be read from many
// threads as long as no render assigns to a namespace inside it. Copying
// and freeing nested values recurses: whoever builds a context from client
// data bounds its nesting (e.g. the JSON parser's depth limit); the
// interpreter itself walks at most 256 levels.
#ifndef SPIKESERVE_RUNTIME_TEXT_JINJA_VALUE_H_
#define SPIKESERVE_RUNTIME_TEXT_JINJA_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace spikeserve {

class JinjaValue;
class JinjaDict;

struct JinjaCallArgs;
struct JinjaCallable;

class JinjaValue {
 public:
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,  // also tuples, generators and dict views (flavor())
    kDict,
    kNamespace,
    kCallable,
  };
  using ListData = std::vector<JinjaValue>;
  // What Python object a kList value stands for. jinja2's map/select/...
  // filters return generators and dict.items() a view; they iterate like a
  // list but differ where it shows: no len(), no indexing, not JSON
  // serializable, a generator is always true.
  enum class ListFlavor {
    kList,
    kTuple,
    kGenerator,
    kDictKeys,
    kDictValues,
    kDictItems,
  };

  // Undefined (jinja2's default Undefined). `hint` says what was missing,
  // for the error raised when it is used in a way that needs a value
  // (e.g. "'x' is undefined").
  JinjaValue() = default;
  static JinjaValue Undefined(std::string hint = "");
  static JinjaValue None();
  static JinjaValue Bool(bool b);
  static JinjaValue Int(int64_t i);
  static JinjaValue Float(double f);
  static JinjaValue String(std::string s);
  // A string marked safe (markupsafe.Markup): `+` with it HTML-escapes the
  // other operand, as in Python (templates use `"..."|safe + name`).
  static JinjaValue Markup(std::string s);
  static JinjaValue List(ListData items, ListFlavor flavor = ListFlavor::kList);
  static JinjaValue Tuple(ListData items);
  // A generator whose first use fails with `error`: jinja2's map, select,
  // items, ... are lazy, so a bad input only fails when the result is
  // iterated (not when it is tested or printed).
  static JinjaValue FailedGenerator(std::string error);
  static JinjaValue Dict(JinjaDict dict);
  static JinjaValue Namespace(JinjaDict attributes);
  static JinjaValue Callable(
      std::string name,
      std::function<absl::StatusOr<JinjaValue>(JinjaCallArgs&)> fn);

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool IsUndefined() const { return kind() == Kind::kUndefined; }
  bool IsNone() const { return kind() == Kind::kNone; }
  bool IsBool() const { return kind() == Kind::kBool; }
  bool IsInt() const { return kind() == Kind::kInt; }
  bool IsFloat() const { return kind() == Kind::kFloat; }
  // Python numbers: bool is an int.
  bool IsNumber() const { return IsBool() || IsInt() || IsFloat(); }
  bool IsIntegral() const { return IsBool() || IsInt(); }
  bool IsString() const { return kind() == Kind::kString; }
  bool IsMarkup() const { return IsString() && markup_; }
  bool IsList() const { return kind() == Kind::kList; }
  bool IsTuple() const { return IsList() && flavor_ == ListFlavor::kTuple; }
  // A list or tuple: indexable, sliceable, has len() and a JSON form.
  bool IsSequence() const {
    return IsList() &&
           (flavor_ == ListFlavor::kList || flavor_ == ListFlavor::kTuple);
  }
  bool IsGenerator() const {
    return IsList() && flavor_ == ListFlavor::kGenerator;
  }
  ListFlavor flavor() const { return flavor_; }
  // The error a FailedGenerator raises when iterated, or nullptr.
  const std::string* DeferredError() const {
    return deferred_error_ ? &AsList()[0].AsString() : nullptr;
  }
  bool IsDict() const { return kind() == Kind::kDict; }
  bool IsNamespace() const { return kind() == Kind::kNamespace; }
  bool IsCallable() const { return kind() == Kind::kCallable; }

  // Accessors; the kind must match (bool/int for AsInt, any number for
  // AsDouble).
  bool AsBool() const { return std::get<bool>(data_); }
  int64_t AsInt() const;
  double AsDouble() const;
  const std::string& AsString() const { return std::get<std::string>(data_); }
  const ListData& AsList() const { return *std::get<ListPtr>(data_); }
  const JinjaDict& AsDict() const { return *std::get<DictPtr>(data_); }
  // The namespace's attributes; shared, so assignment is seen by every copy.
  JinjaDict& NamespaceAttributes() const {
    return *std::get<NamespacePtr>(data_).ptr;
  }
  const JinjaCallable& AsCallable() const {
    return *std::get<CallablePtr>(data_);
  }
  const std::string& UndefinedHint() const {
    return std::get<UndefinedTag>(data_).hint;
  }

  // Python truth value (bool(x)); Undefined is false.
  bool Truthy() const;
  // Python str(x) (what `{{ x }}` prints; Undefined prints nothing).
  std::string Str() const;
  // Python repr(x).
  std::string Repr() const;
  // Python type name for error messages ("str", "NoneType", ...).
  std::string TypeName() const;
  // Python ==.
  bool Equals(const JinjaValue& other) const;
  // Python <, as -1/0/1; TypeError (InvalidArgument) for unordered kinds.
  absl::StatusOr<int> Compare(const JinjaValue& other) const;
  // Python hashability (dict keys, `in` on a dict).
  bool IsHashable() const;
  // Number of elements (strings: code points); error for kinds without len.
  absl::StatusOr<int64_t> Length() const;

  // json.dumps(x, ensure_ascii=False, indent=indent, separators=...,
  // sort_keys=...): `indent` < 0 means None; empty separators mean the
  // default (", " / ": ", or "," / ": " with an indent).
  struct JsonOptions {
    int indent = -1;
    std::string item_separator;
    std::string key_separator;
    bool sort_keys = false;
    // ResourceExhausted as soon as the text passes this many bytes (-1: no
    // bound): indentation grows a deep value many times over, so the
    // render's size limit is checked while it is written, not after.
    int64_t max_bytes = -1;
  };
  absl::StatusOr<std::string> ToJson(const JsonOptions& options) const;

 private:
  struct UndefinedTag {
    std::string hint;
  };
  struct NoneTag {};
  using ListPtr = std::shared_ptr<const ListData>;
  using DictPtr = std::shared_ptr<const JinjaDict>;
  struct NamespacePtr {
    std::shared_ptr<JinjaDict> ptr;
  };
  using CallablePtr = std::shared_ptr<const JinjaCallable>;

  // The order must match Kind.
  std::variant<UndefinedTag, NoneTag, bool, int64_t, double, std::string,
               ListPtr, DictPtr, NamespacePtr, CallablePtr>
      data_;
  ListFlavor flavor_ = ListFlavor::kList;  // kList only
  bool markup_ = false;                    // kString: markupsafe.Markup
  bool deferred_error_ = false;  // kList: a FailedGenerator (message inside)
};

// Arguments of a call: positional, then keyword (in call order).
struct JinjaCallArgs {
  std::vector<JinjaValue> positional;
  std::vector<std::pair<std::string, JinjaValue>> keyword;
};

// A native function or a macro. `name` is used in error messages and repr.
struct JinjaCallable {
  using Function = std::function<absl::StatusOr<JinjaValue>(JinjaCallArgs&)>;
  std::string name;
  Function function;
};

// An insertion-ordered dict, as Python's. Keys are hashable values (in
// practice strings); 1, 1.0 and True are the same key, as in Python.
class JinjaDict {
 public:
  using Item = std::pair<JinjaValue, JinjaValue>;

  // Inserts or replaces (keeping the first insertion's position).
  void Set(const JinjaValue& key, JinjaValue value);
  void Set(absl::string_view key, JinjaValue value) {
    Set(JinjaValue::String(std::string(key)), std::move(value));
  }
  const JinjaValue* Find(const JinjaValue& key) const;
  const JinjaValue* Find(absl::string_view key) const;
  bool Contains(const JinjaValue& key) const { return Find(key) != nullptr; }
  const std::vector<Item>& items() const { return items_; }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  void Clear() {
    items_.clear();
    index_.clear();
  }

 private:
  std::vector<Item> items_;
  // Canonical key text (kind-tagged) -> position in items_.
  absl::flat_hash_map<std::string, size_t> index_;
};

// Python's float repr: the shortest digits that round-trip, fixed notation
// for exponents in [-4, 16), else "1e+20"; "inf", "nan".
std::string PythonFloatRepr(double value);

// Python repr() of a str: single quotes unless the text holds ' and no ".
std::string PythonStringRepr(absl::string_view s);

// markupsafe.escape: & < > ' " as HTML entities.
std::string HtmlEscape(absl::string_view s);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_TEXT_JINJA_VALUE_H_
