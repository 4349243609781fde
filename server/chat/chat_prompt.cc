#include "server/chat/chat_prompt.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/last_occurrence.h"
#include "runtime/text/jinja_strings.h"

namespace spikeserve {
namespace {

std::string TokenText(const Tokenizer& tok, int32_t id) {
  if (id < 0) return "";
  absl::StatusOr<std::string> text = tok.TokenBytes(id);
  return text.ok() ? *std::move(text) : "";
}

}  // namespace

bool IsChatRole(absl::string_view role) {
  return role == "system" || role == "user" || role == "assistant" ||
         role == "tool";
}

absl::StatusOr<std::unique_ptr<ChatPrompt>> ChatPrompt::Create(
    absl::string_view source, absl::string_view origin,
    const Tokenizer* tokenizer) {
  absl::StatusOr<ChatTemplate> t = ChatTemplate::Parse(source);
  if (!t.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chat template (", origin, ") does not parse: ", t.status().message()));
  }
  return std::unique_ptr<ChatPrompt>(new ChatPrompt(
      *std::move(t), tokenizer, TokenText(*tokenizer, tokenizer->bos_id()),
      TokenText(*tokenizer, tokenizer->eos_id()), ToolCallSyntaxOf(source)));
}

absl::StatusOr<std::string> ChatPrompt::Render(
    absl::Span<const ChatMessage> messages, ChatEnding ending,
    const JinjaValue* tools) const {
  const bool add_generation_prompt = ending == ChatEnding::kGenerationPrompt;
  if (messages.empty()) {
    return absl::InvalidArgumentError("messages is empty");
  }
  JinjaValue::ListData list;
  list.reserve(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (!IsChatRole(m.role)) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].role \"", m.role,
                       "\" is not one of system, user, assistant, tool"));
    }
    JinjaDict d;
    d.Set("role", JinjaValue::String(m.role));
    d.Set("content", JinjaValue::String(m.content));
    if (m.name) d.Set("name", JinjaValue::String(*m.name));
    if (m.tool_call_id)
      d.Set("tool_call_id", JinjaValue::String(*m.tool_call_id));
    if (m.tool_calls) d.Set("tool_calls", *m.tool_calls);
    list.push_back(JinjaValue::Dict(std::move(d)));
  }
  JinjaDict context;
  context.Set("messages", JinjaValue::List(std::move(list)));
  context.Set("add_generation_prompt", JinjaValue::Bool(add_generation_prompt));
  context.Set("bos_token", JinjaValue::String(bos_));
  context.Set("eos_token", JinjaValue::String(eos_));
  if (tools != nullptr) context.Set("tools", *tools);
  absl::StatusOr<std::string> text =
      template_.Render(JinjaValue::Dict(std::move(context)));
  if (!text.ok()) {
    if (IsRaisedByTemplate(text.status())) return text.status();
    return absl::Status(
        text.status().code(),
        absl::StrCat("the chat template failed: ", text.status().message()));
  }
  if (ending == ChatEnding::kContinueFinalMessage) {
    // As transformers does: cut after the last occurrence of the final
    // message's content, stripped as Python's str.strip (Unicode spaces
    // too), as templates often |trim it.
    const std::string content =
        jinja::PyStrip(messages.back().content, std::nullopt, true, true);
    const size_t at =
        content.empty() ? std::string::npos : LastOccurrence(*text, content);
    if (at == std::string::npos) {
      return absl::InvalidArgumentError(
          "continue_final_message: the chat template does not write the "
          "final message's content as it is, so it cannot be continued");
    }
    text->resize(at + content.size());
  }
  return text;
}

absl::StatusOr<std::vector<int32_t>> ChatPrompt::Encode(
    absl::Span<const ChatMessage> messages, ChatEnding ending,
    const JinjaValue* tools, size_t max_text_bytes) const {
  absl::StatusOr<std::string> text = Render(messages, ending, tools);
  if (!text.ok()) return text.status();
  if (text->size() > max_text_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the rendered chat has ", text->size(),
                     " bytes: more than the context can hold (at most ",
                     max_text_bytes, " bytes)"));
  }
  absl::StatusOr<std::vector<int32_t>> ids =
      tokenizer_->Encode(*text, /*add_special=*/false, /*parse_special=*/true);
  if (!ids.ok()) return ids.status();
  const int32_t bos = tokenizer_->bos_id();
  if (tokenizer_->add_bos() && (ids->empty() || ids->front() != bos)) {
    ids->insert(ids->begin(), bos);
  }
  if (ids->empty()) {
    return absl::InvalidArgumentError("the chat template rendered no tokens");
  }
  return ids;
}

}  // namespace spikeserve
