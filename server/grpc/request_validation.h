// Turns a GenerateRequest (proto) into the engine's native
// GenerationRequest, validating every field first: a request that breaks a
// rule gets INVALID_ARGUMENT with a message naming the field and the
// allowed range, and never reaches the engine (style.md rule 7).
#ifndef SPIKESERVE_SERVER_GRPC_REQUEST_VALIDATION_H_
#define SPIKESERVE_SERVER_GRPC_REQUEST_VALIDATION_H_

#include "absl/status/statusor.h"
#include "runtime/model/model_config.h"
#include "runtime/serving/context_budget.h"
#include "runtime/serving/engine.h"
#include "runtime/text/tokenizer.h"
#include "server/chat/chat_prompt.h"
#include "spikeserve/v1/generation.pb.h"

namespace spikeserve {

// Request ids the server assigns (to requests that bring none) are this
// prefix and 32 hex digits of 128 random bits: unguessable, and in a
// namespace that client ids may not use, so a client can neither take the
// id of someone else's next request nor abort it. See NewServerRequestId.
inline constexpr absl::string_view kServerRequestIdPrefix = "spikeserve-";

// True for ids in the server's namespace.
bool IsServerRequestId(absl::string_view id);
// A fresh server id from the kernel's CSPRNG (getrandom); Internal error
// only if the kernel cannot give randomness.
absl::StatusOr<std::string> NewServerRequestId();

struct RequestLimits {
  int default_max_new_tokens = 256;  // when the request says 0
  int max_stop_sequences = 16;
  int max_stop_sequence_bytes = 256;
  int max_top_n = 20;
  int max_request_id_bytes = 128;
  // What one request can hold (the engine's context_budget(): the model's
  // context after the QFeP prefix, and the KV pool).
  ContextBudget context;
};

// `chat` renders input.chat; null = the model has no chat template (such
// requests get FAILED_PRECONDITION).
absl::StatusOr<GenerationRequest> ToGenerationRequest(
    const v1::GenerateRequest& request, const Tokenizer& tokenizer,
    const ModelConfig& config, const RequestLimits& limits,
    const ChatPrompt* chat = nullptr);

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_GRPC_REQUEST_VALIDATION_H_
