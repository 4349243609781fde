// Arbitrary bytes as an OpenAI request body (the first byte picks chat or
// completions): parsing answers a 4xx OpenAiError or a request, and the
// request goes through the same validation as gRPC's; nothing crashes, and
// what is accepted fits the context.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "fuzz/fuzz_fixture.h"
#include "google/protobuf/stubs/logging.h"
#include "server/grpc/request_validation.h"
#include "server/http/openai_protocol.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spikeserve;
  if (size < 1) return 0;
  const fuzz::TinyModel& m = fuzz::GetTinyModel();
  static const std::unique_ptr<ChatPrompt> chat = *ChatPrompt::Create(
      "{% for m in messages %}<{{ m.role }}>{{ m.content }}"
      "{% if m.tool_calls is defined %}{{ m.tool_calls | tojson }}{% endif %}"
      "{% endfor %}{% if tools is defined %}{{ tools | tojson }}{% endif %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}",
      "fuzz", m.tokenizer.get());
  const OpenAiEndpoint endpoint =
      data[0] & 1 ? OpenAiEndpoint::kChat : OpenAiEndpoint::kCompletion;
  OpenAiError error;
  absl::StatusOr<OpenAiRequest> req = ParseOpenAiRequest(
      endpoint,
      absl::string_view(reinterpret_cast<const char*>(data) + 1, size - 1),
      &error);
  if (!req.ok()) {
    if (error.http_status != 400 || error.message.empty()) std::abort();
    (void)ErrorJson(error);
    return 0;
  }
  RequestLimits limits;
  limits.context = {.model_context = m.config.context_length,
                    .prefix_tokens = 3,
                    .kv_blocks = 64,
                    .block_tokens = 16};
  auto r = ToGenerationRequest(req->request, *m.tokenizer, m.config, limits,
                               chat.get());
  if (!r.ok()) {
    const OpenAiError e = ErrorFromStatus(r.status());
    if (e.http_status != 400 && e.http_status != 429) std::abort();
    return 0;
  }
  const int total = int(r->prompt.size()) + r->stopping.max_new_tokens + 3;
  if (r->prompt.empty() || r->stopping.max_new_tokens < 1 ||
      total > m.config.context_length) {
    std::abort();
  }
  return 0;
}
