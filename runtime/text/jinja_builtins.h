// Built-in filters, tests, methods and globals of the Jinja interpreter:
// the part of jinja2's defaults (plus the Python str/dict/list methods that
// the sandbox lets templates call) that chat templates use. Each follows the
// jinja2 3.1 implementation, so the text it produces is the same.
#ifndef SPIKESERVE_RUNTIME_TEXT_JINJA_BUILTINS_H_
#define SPIKESERVE_RUNTIME_TEXT_JINJA_BUILTINS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/text/jinja_value.h"

namespace spikeserve::jinja {

class Interpreter;

bool IsKnownFilter(absl::string_view name);
bool IsKnownTest(absl::string_view name);

// Applies filter `name` to `input`.
absl::StatusOr<JinjaValue> ApplyFilter(Interpreter& interpreter,
                                       absl::string_view name,
                                       const JinjaValue& input,
                                       JinjaCallArgs& args);
// Applies test `name` to `input`.
absl::StatusOr<bool> ApplyTest(Interpreter& interpreter, absl::string_view name,
                               const JinjaValue& input, JinjaCallArgs& args);

// obj.name for str, dict and list methods (items, get, strip, split, ...):
// a bound method, or nullopt when `obj` has no such method. Methods that
// would mutate (append, update, ...) are refused as the immutable sandbox
// refuses them.
absl::StatusOr<std::optional<JinjaValue>> GetMethod(const JinjaValue& obj,
                                                    const std::string& name);

// The globals every render sees (range, namespace, dict, raise_exception,
// cycler/joiner are not provided). strftime_now is added by ChatTemplate.
JinjaDict BuiltinGlobals();

// Binds a call's arguments to parameter names, Python style: positional
// first, then keywords; unknown keywords and surplus arguments are errors.
class ArgBinder {
 public:
  // `what` names the callee in errors ("filter 'indent'").
  static absl::StatusOr<ArgBinder> Bind(const std::string& what,
                                        JinjaCallArgs& args,
                                        std::vector<std::string> params);
  // The argument bound to parameter `i`, or nullptr.
  const JinjaValue* Get(size_t i) const {
    return bound_[i].has_value() ? &*bound_[i] : nullptr;
  }
  JinjaValue GetOr(size_t i, JinjaValue fallback) const {
    return bound_[i].has_value() ? *bound_[i] : std::move(fallback);
  }

 private:
  std::vector<std::optional<JinjaValue>> bound_;
};

}  // namespace spikeserve::jinja

#endif  // SPIKESERVE_RUNTIME_TEXT_JINJA_BUILTINS_H_
