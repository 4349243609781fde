#include "server/grpc/request_validation.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/text/utf8.h"
#include "server/chat/json_to_jinja.h"
#include "server/client_json.h"

namespace spikeserve {
namespace {

constexpr int kMaxStopTokenIds = 1024;

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", problem));
}

bool ValidUtf8(absl::string_view s) {
  size_t bad;
  return CompleteUtf8Prefix(s, &bad) == s.size();
}

// A JSON array (tools, tool calls) for the chat template, or why not.
absl::StatusOr<JinjaValue> JsonArray(absl::string_view field,
                                     const std::string& text) {
  std::string why;
  const nlohmann::ordered_json j = ParseClientJson(text, &why);
  if (j.is_discarded()) return Invalid(field, why);
  if (!j.is_array()) return Invalid(field, "is not a JSON array");
  return JsonToJinja(j);
}

// Why a prompt text of `bytes` cannot fit the context.
std::string TooLong(size_t bytes, const RequestLimits& limits,
                    const Tokenizer& tok) {
  return absl::StrCat("has ", bytes, " bytes: more than the context of ",
                      limits.context.MaxTokens(), " tokens can hold (at most ",
                      tok.max_token_bytes(), " bytes per token)");
}

// input.chat as prompt tokens through the model's chat template; a
// rendered text over max_text_bytes is refused before it is tokenized.
absl::StatusOr<std::vector<int32_t>> ChatPromptTokens(const v1::ChatInput& in,
                                                      const ChatPrompt* chat,
                                                      size_t max_text_bytes) {
  if (chat == nullptr) {
    return absl::FailedPreconditionError(
        "input.chat: this model has no chat template (its GGUF has no "
        "tokenizer.chat_template); start the server with --chat_template "
        "FILE, or send the prompt as text");
  }
  if (in.messages().empty()) return Invalid("input.chat.messages", "is empty");
  std::vector<ChatMessage> messages;
  messages.reserve(in.messages_size());
  for (int i = 0; i < in.messages_size(); ++i) {
    const v1::ChatMessage& m = in.messages(i);
    const std::string field = absl::StrCat("input.chat.messages[", i, "]");
    if (!IsChatRole(m.role())) {
      return Invalid(absl::StrCat(field, ".role"),
                     absl::StrCat("= \"", absl::CHexEscape(m.role()),
                                  "\" is not one of system, user, assistant, "
                                  "tool"));
    }
    for (const auto& [name, value] :
         {std::pair<const char*, const std::string*>{"content", &m.content()},
          {"name", &m.name()},
          {"tool_call_id", &m.tool_call_id()}}) {
      if (!ValidUtf8(*value)) {
        return Invalid(absl::StrCat(field, ".", name), "is not valid UTF-8");
      }
    }
    ChatMessage cm{m.role(), m.content()};
    if (!m.name().empty()) cm.name = m.name();
    if (!m.tool_call_id().empty()) cm.tool_call_id = m.tool_call_id();
    if (!m.tool_calls_json().empty()) {
      absl::StatusOr<JinjaValue> calls = JsonArray(
          absl::StrCat(field, ".tool_calls_json"), m.tool_calls_json());
      if (!calls.ok()) return calls.status();
      cm.tool_calls = *std::move(calls);
    }
    messages.push_back(std::move(cm));
  }
  std::optional<JinjaValue> tools;
  if (!in.tools_json().empty()) {
    absl::StatusOr<JinjaValue> t =
        JsonArray("input.chat.tools_json", in.tools_json());
    if (!t.ok()) return t.status();
    tools = *std::move(t);
  }
  absl::StatusOr<std::vector<int32_t>> ids = chat->Encode(
      messages,
      in.continue_final_message() ? ChatEnding::kContinueFinalMessage
                                  : ChatEnding::kGenerationPrompt,
      tools ? &*tools : nullptr, max_text_bytes);
  if (!ids.ok()) {
    return absl::Status(ids.status().code(),
                        absl::StrCat("input.chat: ", ids.status().message()));
  }
  return ids;
}

}  // namespace

bool IsServerRequestId(absl::string_view id) {
  return absl::StartsWith(id, kServerRequestIdPrefix);
}

absl::StatusOr<std::string> NewServerRequestId() {
  char bytes[16];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    const ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::InternalError(absl::StrCat(
          "cannot draw a request id: getrandom: ", std::strerror(errno)));
    }
    got += size_t(n);
  }
  return absl::StrCat(kServerRequestIdPrefix,
                      absl::BytesToHexString(absl::string_view(bytes, 16)));
}

absl::StatusOr<GenerationRequest> ToGenerationRequest(
    const v1::GenerateRequest& r, const Tokenizer& tok, const ModelConfig& c,
    const RequestLimits& limits, const ChatPrompt* chat) {
  GenerationRequest out;
  // request_id: optional, bounded, printable ASCII (it reaches logs).
  if (int(r.request_id().size()) > limits.max_request_id_bytes) {
    return Invalid(
        "request_id",
        absl::StrCat("is longer than ", limits.max_request_id_bytes, " bytes"));
  }
  for (char ch : r.request_id()) {
    if (ch < 0x21 || ch > 0x7E) {
      return Invalid("request_id", "must be printable ASCII without spaces");
    }
  }
  if (IsServerRequestId(r.request_id())) {
    return Invalid("request_id",
                   absl::StrCat("must not start with '", kServerRequestIdPrefix,
                                "' (reserved for ids the server assigns)"));
  }
  out.id = r.request_id();

  // Prompt. A text longer than the context times the longest token cannot
  // fit: refused before tokenizing it (megabytes of text took seconds of
  // a serving thread and hundreds of MB for one BPE word).
  const int vocab = tok.vocab_size();
  const size_t max_text_bytes =
      size_t(std::max(0, limits.context.MaxTokens())) * tok.max_token_bytes();
  switch (r.input_case()) {
    case v1::GenerateRequest::kText: {
      if (r.text().empty()) return Invalid("input.text", "is empty");
      if (r.text().size() > max_text_bytes) {
        return Invalid("input.text", TooLong(r.text().size(), limits, tok));
      }
      if (!ValidUtf8(r.text()))
        return Invalid("input.text", "is not valid UTF-8");
      absl::StatusOr<std::vector<int32_t>> ids =
          tok.Encode(r.text(), r.add_special_tokens(), r.add_special_tokens());
      if (!ids.ok()) return Invalid("input.text", ids.status().message());
      if (ids->empty()) return Invalid("input.text", "has no tokens");
      out.prompt = *std::move(ids);
      break;
    }
    case v1::GenerateRequest::kTokens: {
      if (r.tokens().ids().empty())
        return Invalid("input.tokens.ids", "is empty");
      for (int i = 0; i < r.tokens().ids_size(); ++i) {
        const int32_t id = r.tokens().ids(i);
        if (id < 0 || id >= vocab) {
          return Invalid(
              absl::StrCat("input.tokens.ids[", i, "]"),
              absl::StrCat("= ", id, " is outside the vocabulary [0, ", vocab,
                           ")"));
        }
      }
      out.prompt.assign(r.tokens().ids().begin(), r.tokens().ids().end());
      break;
    }
    case v1::GenerateRequest::kChat: {
      absl::StatusOr<std::vector<int32_t>> ids =
          ChatPromptTokens(r.chat(), chat, max_text_bytes);
      if (!ids.ok()) return ids.status();
      out.prompt = *std::move(ids);
      break;
    }
    default:
      return Invalid("input", "is missing: set text, tokens or chat");
  }

  // Stopping.
  const int context = limits.context.MaxTokens();
  const v1::StoppingParams& st = r.stopping();
  int max_new = st.max_new_tokens() == 0
                    ? limits.default_max_new_tokens
                    : int(std::min<uint32_t>(st.max_new_tokens(), 1u << 30));
  if (int(out.prompt.size()) >= context) {
    return Invalid("input", absl::StrCat("has ", out.prompt.size(),
                                         " tokens; the context holds ", context,
                                         " including at least one new token"));
  }
  if (st.max_new_tokens() != 0 && int(out.prompt.size()) + max_new > context) {
    return Invalid(
        "stopping.max_new_tokens",
        absl::StrCat("= ", st.max_new_tokens(), " with a prompt of ",
                     out.prompt.size(), " tokens exceeds the context of ",
                     context, " tokens (allowed 1..",
                     context - int(out.prompt.size()), ")"));
  }
  // The default shrinks to what fits.
  max_new = std::min(max_new, context - int(out.prompt.size()));
  out.stopping.max_new_tokens = max_new;
  if (st.stop_sequences_size() > limits.max_stop_sequences) {
    return Invalid(
        "stopping.stop_sequences",
        absl::StrCat("has ", st.stop_sequences_size(), " entries; at most ",
                     limits.max_stop_sequences));
  }
  for (int i = 0; i < st.stop_sequences_size(); ++i) {
    const std::string& s = st.stop_sequences(i);
    const std::string field = absl::StrCat("stopping.stop_sequences[", i, "]");
    if (s.empty()) return Invalid(field, "is empty");
    if (int(s.size()) > limits.max_stop_sequence_bytes) {
      return Invalid(
          field, absl::StrCat("is longer than ", limits.max_stop_sequence_bytes,
                              " bytes"));
    }
    if (!ValidUtf8(s)) return Invalid(field, "is not valid UTF-8");
    out.stopping.stop_sequences.push_back(s);
  }
  // Each is compared with every generated token.
  if (st.stop_token_ids_size() > kMaxStopTokenIds) {
    return Invalid("stopping.stop_token_ids",
                   absl::StrCat("has ", st.stop_token_ids_size(),
                                " ids; at most ", kMaxStopTokenIds));
  }
  for (int i = 0; i < st.stop_token_ids_size(); ++i) {
    const int32_t id = st.stop_token_ids(i);
    if (id < 0 || id >= vocab) {
      return Invalid(absl::StrCat("stopping.stop_token_ids[", i, "]"),
                     absl::StrCat("= ", id, " is outside the vocabulary [0, ",
                                  vocab, ")"));
    }
    out.stopping.stop_token_ids.push_back(id);
  }
  out.stopping.ignore_eos = st.ignore_eos();

  // Sampling: zero means "off" for top_p and repetition_penalty.
  const v1::SamplingParams& sp = r.sampling();
  out.sampling.temperature = sp.temperature();
  out.sampling.top_k = sp.top_k();
  out.sampling.top_p = sp.top_p() == 0 ? 1.0f : sp.top_p();
  out.sampling.min_p = sp.min_p();
  out.sampling.repetition_penalty =
      sp.repetition_penalty() == 0 ? 1.0f : sp.repetition_penalty();
  out.sampling.presence_penalty = sp.presence_penalty();
  out.sampling.frequency_penalty = sp.frequency_penalty();
  out.sampling.seed = sp.seed();
  for (const auto& [id, bias] : sp.logit_bias()) {
    if (id < 0 || id >= vocab) {
      return Invalid(
          absl::StrCat("sampling.logit_bias[", id, "]"),
          absl::StrCat("is outside the vocabulary [0, ", vocab, ")"));
    }
    out.sampling.logit_bias.emplace_back(id, bias);
  }
  // The map's order is unspecified; sorted, equal requests are equal.
  std::sort(out.sampling.logit_bias.begin(), out.sampling.logit_bias.end());
  if (absl::Status s = ValidateSamplingParams(out.sampling); !s.ok()) return s;
  if (sp.top_k() > vocab) {
    return Invalid(
        "sampling.top_k",
        absl::StrCat("= ", sp.top_k(), " exceeds the vocabulary of ", vocab));
  }
  // Compared as unsigned before narrowing: int(2^31) is negative.
  if (r.top_n_tokens() > uint32_t(std::max(0, limits.max_top_n))) {
    return Invalid("top_n_tokens",
                   absl::StrCat("= ", r.top_n_tokens(),
                                " is outside the allowed range [0, ",
                                limits.max_top_n, "]"));
  }
  out.top_n = int(r.top_n_tokens());
  return out;
}

}  // namespace spikeserve
