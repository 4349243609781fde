// A conversation (messages) turned into prompt tokens with the model's own
// chat template: the front ends' shared step between a client's messages
// (gRPC ChatInput, OpenAI JSON) and the engine, which only sees tokens.
//
// Rendering follows Hugging Face's apply_chat_template: the template gets
// `messages` (a list of {role, content} dicts, plus `name`, `tool_call_id`
// and `tool_calls` when given), `tools` when the request has them,
// `add_generation_prompt`, `bos_token` and `eos_token`. The text is then
// tokenized with special tokens parsed (the template writes them as text) and
// without adding any: BOS is prepended only when the model asks for one and the
// template did not already write it, so a Llama 3 template that starts with {{
// bos_token }} gets exactly one BOS (llama.cpp's server doubles it and warns).
//
// Thread-safety: immutable after Create; Encode may run on many threads.
#ifndef SPIKESERVE_SERVER_CHAT_CHAT_PROMPT_H_
#define SPIKESERVE_SERVER_CHAT_CHAT_PROMPT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/text/jinja.h"
#include "runtime/text/tokenizer.h"
#include "server/chat/tool_calls.h"

namespace spikeserve {

struct ChatMessage {
  std::string role;  // system, user, assistant or tool
  std::string content;
  std::optional<std::string> name;          // optional speaker name
  std::optional<std::string> tool_call_id;  // role tool: the call answered
  // role assistant: the calls it made (a list of dicts, OpenAI's shape).
  std::optional<JinjaValue> tool_calls;
};

// How the conversation ends.
enum class ChatEnding {
  // The template's generation prompt opens the assistant's next message.
  kGenerationPrompt,
  // The last message (an assistant's, typically) is continued: rendered
  // without the generation prompt and cut right after its content, so the
  // template's end-of-turn is not in the prompt (Hugging Face's
  // continue_final_message).
  kContinueFinalMessage,
};

// Roles a message may have; anything else is InvalidArgument.
bool IsChatRole(absl::string_view role);

class ChatPrompt {
 public:
  // Parses `source` (a Jinja chat template). A template that does not parse
  // is InvalidArgument naming `origin` (the GGUF key or the file), the line
  // and the column. `tokenizer` must outlive the ChatPrompt.
  static absl::StatusOr<std::unique_ptr<ChatPrompt>> Create(
      absl::string_view source, absl::string_view origin,
      const Tokenizer* tokenizer);

  // The rendered prompt text. Errors are InvalidArgument: no messages, an
  // unknown role, the template's own raise_exception (its message as it
  // is, e.g. "Conversation roles must alternate user/assistant/..."), or a
  // runtime error in the template (naming line and column);
  // ResourceExhausted beyond the render limits.
  // `tools` (a list of tool definitions, OpenAI's shape) is the template's
  // `tools`; null leaves it undefined, as templates expect without tools.
  absl::StatusOr<std::string> Render(absl::Span<const ChatMessage> messages,
                                     ChatEnding ending,
                                     const JinjaValue* tools = nullptr) const;
  // The syntax the template teaches for tool calls (kNone: it shows none).
  ToolCallSyntax tool_call_syntax() const { return tool_call_syntax_; }

  // Render, then the prompt tokens (see the file comment for BOS). A
  // rendered text over `max_text_bytes` is InvalidArgument before it is
  // tokenized (the caller's bound: it cannot fit the context).
  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::Span<const ChatMessage> messages, ChatEnding ending,
      const JinjaValue* tools = nullptr,
      size_t max_text_bytes = std::string::npos) const;

 private:
  ChatPrompt(ChatTemplate tmpl, const Tokenizer* tokenizer, std::string bos,
             std::string eos, ToolCallSyntax tool_call_syntax)
      : template_(std::move(tmpl)),
        tokenizer_(tokenizer),
        bos_(std::move(bos)),
        eos_(std::move(eos)),
        tool_call_syntax_(tool_call_syntax) {}

  ChatTemplate template_;
  const Tokenizer* tokenizer_;
  std::string bos_, eos_;  // the special tokens' text ("" without one)
  ToolCallSyntax tool_call_syntax_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_CHAT_CHAT_PROMPT_H_
