// The OpenAI HTTP API's JSON, both ways, and nothing of HTTP itself:
// request bodies of /v1/chat/completions and /v1/completions become a
// v1::GenerateRequest (then validated by the same ToGenerationRequest as
// gRPC's), and the engine's updates become OpenAI's response objects and
// stream chunks. Unknown fields are ignored, as OpenAI does; a known field
// of the wrong type or out of range is a 400 naming it ("param").
//
// Thread-safety: free functions over their arguments.
#ifndef SPIKESERVE_SERVER_HTTP_OPENAI_PROTOCOL_H_
#define SPIKESERVE_SERVER_HTTP_OPENAI_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "runtime/serving/engine.h"
#include "runtime/text/tokenizer.h"
#include "server/chat/tool_calls.h"
#include "spikeserve/v1/generation.pb.h"

namespace spikeserve {

// An error as OpenAI shapes it:
//   {"error": {"message", "type", "param", "code"}}
struct OpenAiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the request field at fault ("" = null)
  std::string code;   // "" = null
};
std::string ErrorJson(const OpenAiError& e);
// The HTTP status and type for a status from the server's own validation
// or the engine (InvalidArgument/FailedPrecondition 400, Unauthenticated
// 401, NotFound 404, ResourceExhausted 429, Unavailable 503, else 500).
OpenAiError ErrorFromStatus(const absl::Status& s);

enum class OpenAiEndpoint { kChat, kCompletion };

struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kChat;
  std::string model;  // as the client named it ("" = not given)
  v1::GenerateRequest request;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // per-token logprobs in the answer
  // The request has tools (and tool_choice is not "none"): the answer is
  // parsed for calls in the chat template's syntax.
  bool tools = false;
};

// Parses a request body. Errors are 400s naming the field.
// `max_top_logprobs` bounds top_logprobs (chat) and logprobs (completions).
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint,
                                                 absl::string_view body,
                                                 OpenAiError* error);

// What the answer needs besides the updates.
struct OpenAiAnswerContext {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kChat;
  std::string id;     // "chatcmpl-..." / "cmpl-..."
  std::string model;  // the served model's id
  int64_t created = 0;
  bool logprobs = false;
  const Tokenizer* tokenizer = nullptr;  // token text for logprobs
  // Chat with tools: the syntax the answer's calls are parsed in (kNone:
  // the answer is content).
  ToolCallSyntax tool_calls = ToolCallSyntax::kNone;
};

// A chat stream with tools between its updates: the answer so far and how
// much of it went out as content.
struct ToolCallStream {
  std::string answer;
  size_t sent = 0;
};

// "stop", "length", or "abort" (aborted by the server: draining).
const char* OpenAiFinishReason(FinishReason r);

// The whole (unary) answer from the concatenated text and tokens. With
// ctx.tool_calls, calls parsed from the text are message.tool_calls and
// the answer ends with "tool_calls" instead of "stop".
std::string CompletionJson(const OpenAiAnswerContext& ctx,
                           const std::string& text,
                           const std::vector<GeneratedToken>& tokens,
                           const GenerationUpdate& final_update);

// Server-sent events of one update of a stream, each "data: {...}\n\n":
// the first call (`first`) opens with the assistant role (chat); text and
// logprobs follow; the final update adds the finish_reason chunk, the usage
// chunk when `include_usage`, and "data: [DONE]".
// With ctx.tool_calls, content that may begin a call is held in `held`
// (one per stream) until the end, then sent as a tool_calls delta or as
// content.
std::string StreamEvents(const OpenAiAnswerContext& ctx,
                         const GenerationUpdate& u, bool first,
                         bool include_usage, ToolCallStream* held);

// GET /v1/models.
std::string ModelsJson(const std::string& model, int64_t created);
// GET /v1/models/{id} of the served model.
std::string ModelJson(const std::string& model, int64_t created);

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_HTTP_OPENAI_PROTOCOL_H_
