// Chat templates: a model's `tokenizer.chat_template` (Jinja) parsed once
// and rendered per request, byte-identical to Python's jinja2 in the
// environment Hugging Face transformers uses (ImmutableSandboxedEnvironment
// with trim_blocks, lstrip_blocks and loop controls, a json.dumps `tojson`,
// `raise_exception` and `strftime_now` globals; see
// docs/chat-templates.md of the shared docs).
//
// A text utility: the caller builds the context (messages, tools,
// add_generation_prompt, bos_token, ...) as a JinjaValue dict; nothing here
// knows JSON or HTTP.
//
// Thread-safety: a ChatTemplate is immutable after Parse and may be
// rendered from many threads at once (each Render has its own interpreter
// state). Copies share the parsed template.
#ifndef SPIKESERVE_RUNTIME_TEXT_JINJA_H_
#define SPIKESERVE_RUNTIME_TEXT_JINJA_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "runtime/text/jinja_ast.h"
#include "runtime/text/jinja_eval.h"
#include "runtime/text/jinja_value.h"

namespace spikeserve {

class ChatTemplate {
 public:
  struct RenderOptions {
    // What strftime_now() formats (UTC). Unset: the time of the call.
    std::optional<absl::Time> now;
    jinja::RenderLimits limits;
  };

  // Parses `source`. A syntax error, an unknown tag, filter or test is
  // InvalidArgument naming the line and column ("line 3, column 12: ...").
  static absl::StatusOr<ChatTemplate> Parse(absl::string_view source);

  // Renders with `context` (a dict; its entries are the template's
  // variables, over the globals range, namespace, dict, raise_exception and
  // strftime_now). Errors:
  //  - InvalidArgument: raise_exception('msg') gives exactly "msg" (see
  //    IsRaisedByTemplate); other runtime errors (an undefined value used
  //    as a value, a Python TypeError) name the line and column;
  //  - ResourceExhausted: output or a value beyond limits.max_bytes, more
  //    than limits.max_steps loop iterations, macro calls and KiB copied by
  //    concatenation, or macro recursion deeper than limits.max_call_depth;
  //  - Unimplemented: a Python feature this interpreter does not have
  //    (printf-style "%" on strings, str.format and a few rare str methods).
  absl::StatusOr<std::string> Render(const JinjaValue& context) const;
  absl::StatusOr<std::string> Render(const JinjaValue& context,
                                     const RenderOptions& options) const;

 private:
  explicit ChatTemplate(std::shared_ptr<const jinja::Body> body)
      : body_(std::move(body)) {}

  std::shared_ptr<const jinja::Body> body_;
};

// True when the error came from the template's own raise_exception(), so
// its message is meant for the client as it is.
bool IsRaisedByTemplate(const absl::Status& status);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_TEXT_JINJA_H_
