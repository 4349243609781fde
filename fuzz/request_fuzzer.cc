// Arbitrary bytes as a GenerateRequest (protobuf wire format): validation
// accepts or refuses with INVALID_ARGUMENT (RESOURCE_EXHAUSTED when a chat
// template's render limits are hit), never crashes; what it accepts fits
// the context. Chat inputs go through a template that reads every message
// field, the tools and the tool calls.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "fuzz/fuzz_fixture.h"
#include "google/protobuf/stubs/logging.h"
#include "server/grpc/request_validation.h"

// protobuf logs every invalid UTF-8 string it refuses: keep the run quiet.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spikeserve;
  const fuzz::TinyModel& m = fuzz::GetTinyModel();
  v1::GenerateRequest req;
  if (!req.ParseFromArray(data, int(size))) return 0;
  RequestLimits limits;
  limits.context = {.model_context = m.config.context_length,
                    .prefix_tokens = 3,
                    .kv_blocks = 64,
                    .block_tokens = 16};
  static const std::unique_ptr<ChatPrompt> chat = *ChatPrompt::Create(
      "{% for m in messages %}<{{ m.role }}{% if m.name %} {{ m.name }}"
      "{% endif %}>{{ m.content }}{% if m.tool_calls is defined %}"
      "{{ m.tool_calls | tojson }}{% endif %}{{ m.tool_call_id }}"
      "{% endfor %}{% if tools is defined %}{{ tools | tojson }}{% endif %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}",
      "fuzz", m.tokenizer.get());
  auto r = ToGenerationRequest(req, *m.tokenizer, m.config, limits, chat.get());
  if (!r.ok()) {
    const absl::StatusCode code = r.status().code();
    if (code != absl::StatusCode::kInvalidArgument &&
        code != absl::StatusCode::kResourceExhausted) {
      std::abort();
    }
    return 0;
  }
  const int total = int(r->prompt.size()) + r->stopping.max_new_tokens + 3;
  if (r->prompt.empty() || r->stopping.max_new_tokens < 1 ||
      total > m.config.context_length) {
    std::abort();
  }
  return 0;
}
