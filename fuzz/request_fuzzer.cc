// Arbitrary bytes as a GenerateRequest (protobuf wire format): validation
// accepts or refuses with INVALID_ARGUMENT, never crashes; what it accepts
// fits the context.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

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
  auto r = ToGenerationRequest(req, *m.tokenizer, m.config, limits);
  if (!r.ok()) {
    if (r.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  const int total = int(r->prompt.size()) + r->stopping.max_new_tokens + 3;
  if (r->prompt.empty() || r->stopping.max_new_tokens < 1 ||
      total > m.config.context_length) {
    std::abort();
  }
  return 0;
}
