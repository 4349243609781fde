// The interpreter of parsed Jinja templates: walks the syntax tree of
// jinja_ast.h with jinja2's scoping (a for loop's body is a new scope on
// every iteration, `if` is not a scope, macros see the template's top-level
// variables at call time) and Python's operator semantics. One Interpreter
// renders one template once; it is not shared between threads.
//
// Every render is bounded: output and intermediate values by size, loop
// iterations and macro calls by a step budget, macro recursion by depth, so
// no input makes it crash, hang or exhaust memory.
#ifndef SPIKESERVE_RUNTIME_TEXT_JINJA_EVAL_H_
#define SPIKESERVE_RUNTIME_TEXT_JINJA_EVAL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/text/jinja_ast.h"
#include "runtime/text/jinja_value.h"

namespace spikeserve::jinja {

struct RenderLimits {
  // Largest output, and largest string or list computed on the way.
  int64_t max_bytes = 16 << 20;
  // Loop iterations plus macro calls, plus the work of bulk operations in
  // steps of about a loop iteration's time (Copied, tojson): ~1-2 s of a
  // request thread at most (Zen 3; a loop iteration is ~1.6 us). Chat
  // templates take thousands (a 4 MB conversation of 10,000 messages about
  // 50,000).
  int64_t max_steps = 1'000'000;
  // Nested macro calls (recursive macros).
  int max_call_depth = 100;
};

// The status payload that marks an error raised by the template itself
// (raise_exception), whose message is the template author's text.
inline constexpr char kRaisedExceptionPayload[] =
    "type.spikeserve/jinja.raise_exception";

class Interpreter {
 public:
  // `context` holds the render's variables (a dict); `globals` are seen
  // where the context has no such name.
  Interpreter(const JinjaValue& context, JinjaDict globals,
              const RenderLimits& limits);

  absl::StatusOr<std::string> Render(const Body& body);
  ~Interpreter();

  // Calls a callable value (used by filters such as map with macros).
  absl::StatusOr<JinjaValue> Call(const JinjaValue& callee,
                                  JinjaCallArgs& args);
  // Fails when a computed value exceeds the size limit.
  absl::Status CheckSize(const JinjaValue& value) const;
  absl::Status CheckSize(size_t bytes) const;
  int64_t max_bytes() const { return limits_.max_bytes; }
  // Counts one unit of work against the step budget.
  absl::Status Step();
  // Counts `bytes` a value was built from (concatenation, repetition)
  // against the step budget, a step per kBytesPerStep: a loop that grows a
  // string or list by `+` copies it whole every time, which its one step
  // per iteration did not count (20,000 appends of a message took 5 s).
  absl::Status Copied(size_t bytes);
  static constexpr size_t kBytesPerStep = 1024;
  // Counts `steps` units of work at once (tojson: a step per 4 bytes
  // written, ~0.4 us a byte for large tools).
  absl::Status Charge(int64_t steps);

  // Python-semantics helpers shared with the built-in filters.
  // obj.name (attribute first, then item), as jinja2's getattr.
  absl::StatusOr<JinjaValue> GetAttr(const JinjaValue& obj,
                                     const std::string& name);
  // obj[key] (item first, then attribute), as jinja2's getitem.
  absl::StatusOr<JinjaValue> GetItem(const JinjaValue& obj,
                                     const JinjaValue& key);
  // The elements `for` iterates over (dict keys, string characters).
  absl::StatusOr<JinjaValue::ListData> Iterate(const JinjaValue& value);
  absl::StatusOr<JinjaValue> BinaryOp(const std::string& op,
                                      const JinjaValue& a, const JinjaValue& b);
  // `item in container`.
  absl::StatusOr<bool> Contains(const JinjaValue& container,
                                const JinjaValue& item);

 private:
  struct Scope {
    std::shared_ptr<Scope> parent;
    absl::flat_hash_map<std::string, JinjaValue> vars;
  };
  using ScopePtr = std::shared_ptr<Scope>;
  enum class Flow { kNormal, kBreak, kContinue };

  absl::StatusOr<Flow> Execute(const Body& body, const ScopePtr& scope,
                               std::string* out);
  absl::StatusOr<Flow> ExecuteStmt(const Stmt& stmt, const ScopePtr& scope,
                                   std::string* out);
  absl::StatusOr<Flow> ExecuteFor(const Stmt& stmt, const ScopePtr& scope,
                                  std::string* out);
  absl::Status Assign(const Stmt& stmt, const ScopePtr& scope,
                      JinjaValue value);
  absl::Status DefineMacro(const Stmt& stmt, const ScopePtr& scope);
  absl::StatusOr<JinjaValue> CallMacro(const Stmt& stmt,
                                       const std::weak_ptr<Scope>& scope,
                                       JinjaCallArgs& args);

  absl::StatusOr<JinjaValue> Eval(const Expr& e, const ScopePtr& scope);
  absl::StatusOr<JinjaValue> EvalUnchecked(const Expr& e,
                                           const ScopePtr& scope);
  absl::StatusOr<JinjaCallArgs> EvalArgs(const Expr& e, size_t first,
                                         const ScopePtr& scope);
  absl::StatusOr<JinjaValue> EvalFilter(const Expr& e, JinjaValue input,
                                        const ScopePtr& scope);
  absl::StatusOr<JinjaValue> Slice(const Expr& e, const ScopePtr& scope);
  JinjaValue Lookup(const std::string& name, const ScopePtr& scope) const;
  absl::Status Append(std::string* out, absl::string_view text) const;

  const JinjaValue& context_;
  JinjaDict globals_;
  // Namespaces made by this render's namespace() calls. A namespace can
  // hold itself (ns.self = ns), which shared ownership never frees: the
  // render clears them all when it ends to break such cycles.
  std::vector<JinjaValue> namespaces_;
  const RenderLimits limits_;
  int64_t steps_ = 0;
  int call_depth_ = 0;
};

// "line L, column C: message" for the node, unless the status already
// names a position or was raised by the template (raise_exception).
absl::Status Annotate(absl::Status status, int line, int column);

// An UndefinedError for using `value` where a value is needed.
absl::Status UndefinedError(const JinjaValue& value);

}  // namespace spikeserve::jinja

#endif  // SPIKESERVE_RUNTIME_TEXT_JINJA_EVAL_H_
