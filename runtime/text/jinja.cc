#include "runtime/text/jinja.h"

#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "runtime/text/jinja_builtins.h"
#include "runtime/text/jinja_lexer.h"
#include "runtime/text/jinja_parser.h"

namespace spikeserve {

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(absl::string_view source) {
  absl::StatusOr<std::vector<jinja::Token>> tokens =
      jinja::Tokenize(source, jinja::LexerOptions{});
  if (!tokens.ok()) return tokens.status();
  absl::StatusOr<jinja::Body> body = jinja::Parse(*tokens);
  if (!body.ok()) return body.status();
  return ChatTemplate(std::make_shared<const jinja::Body>(*std::move(body)));
}

absl::StatusOr<std::string> ChatTemplate::Render(
    const JinjaValue& context) const {
  return Render(context, RenderOptions{});
}

absl::StatusOr<std::string> ChatTemplate::Render(
    const JinjaValue& context, const RenderOptions& options) const {
  if (!context.IsDict()) {
    return absl::InvalidArgumentError("the template context must be a dict");
  }
  JinjaDict globals = jinja::BuiltinGlobals();
  globals.Set(
      "raise_exception",
      JinjaValue::Callable(
          "raise_exception",
          [](JinjaCallArgs& args) -> absl::StatusOr<JinjaValue> {
            absl::Status error = absl::InvalidArgumentError(
                args.positional.empty() ? "" : args.positional[0].Str());
            error.SetPayload(jinja::kRaisedExceptionPayload, absl::Cord("1"));
            return error;
          }));
  const absl::Time now = options.now.value_or(absl::Now());
  globals.Set(
      "strftime_now",
      JinjaValue::Callable(
          "strftime_now",
          [now](JinjaCallArgs& args) -> absl::StatusOr<JinjaValue> {
            if (args.positional.size() != 1 || !args.positional[0].IsString()) {
              return absl::InvalidArgumentError(
                  "strftime_now expects one format string");
            }
            return JinjaValue::String(absl::FormatTime(
                args.positional[0].AsString(), now, absl::UTCTimeZone()));
          }));
  jinja::Interpreter interpreter(context, std::move(globals), options.limits);
  return interpreter.Render(*body_);
}

bool IsRaisedByTemplate(const absl::Status& status) {
  return status.GetPayload(jinja::kRaisedExceptionPayload).has_value();
}

}  // namespace spikeserve
