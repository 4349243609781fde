// Tool calls in a model's answer, in the syntax its chat template taught it:
// what the OpenAI front end returns as `tool_calls` (vLLM's tool parsers,
// for the families spikeserve serves). The syntax is read off the template
// once; an answer that does not parse as calls is content, as it was.
//
// Thread-safety: pure functions.
#ifndef SPIKESERVE_SERVER_CHAT_TOOL_CALLS_H_
#define SPIKESERVE_SERVER_CHAT_TOOL_CALLS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace spikeserve {

enum class ToolCallSyntax {
  kNone,  // the template shows none: answers are text
  // <tool_call>{"name": N, "arguments": {...}}</tool_call>, any number, after
  // optional text (Qwen2.5, Hermes 2 Pro / 3).
  kHermes,
  // The whole answer: {"name": N, "parameters": {...}}, several joined by
  // ';' (Llama 3.1-3.3's JSON tool calling).
  kLlama3Json,
  // [TOOL_CALLS][{"name": N, "arguments": {...}}, ...] (Mistral); the
  // marker is a control token and may be absent from the text.
  kMistral,
};

// The syntax `template_source` (a Jinja chat template) teaches, by the
// marker each family's template writes.
ToolCallSyntax ToolCallSyntaxOf(absl::string_view template_source);
const char* ToolCallSyntaxName(ToolCallSyntax s);

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object as text (OpenAI's shape)
};

struct ToolCallAnswer {
  std::string content;          // the text outside the calls, trimmed
  std::vector<ToolCall> calls;  // empty: the answer is all content
};

// Splits an answer into content and calls. Every call must be a JSON object
// with a string "name" and an object of arguments; otherwise there are no
// calls and the content is `text` unchanged.
ToolCallAnswer ParseToolCalls(ToolCallSyntax s, absl::string_view text);

// Streaming: the length of the prefix of `text` (the answer so far) that is
// content whatever comes next. The rest may be (the start of) a call and is
// held until the answer ends. `sure` is what an earlier call returned for
// a prefix of `text`: the search starts there, so a stream's updates do
// not rescan its whole answer each token.
size_t SureContent(ToolCallSyntax s, absl::string_view text, size_t sure = 0);

// An id for call `index` of the answer `answer_id` ("chatcmpl-..."):
// "call_" and 24 hex digits, or 9 alphanumerics for Mistral, whose
// template refuses other ids when the client sends the call back.
std::string ToolCallId(ToolCallSyntax s, absl::string_view answer_id,
                       int index);

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_CHAT_TOOL_CALLS_H_
