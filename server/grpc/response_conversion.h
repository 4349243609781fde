// Engine updates (native types) into GenerateResponse messages.
#ifndef SPIKESERVE_SERVER_GRPC_RESPONSE_CONVERSION_H_
#define SPIKESERVE_SERVER_GRPC_RESPONSE_CONVERSION_H_

#include "absl/strings/string_view.h"
#include "runtime/serving/engine.h"
#include "server/chat/tool_calls.h"
#include "spikeserve/v1/generation.pb.h"

namespace spikeserve {

v1::FinishReason ToProto(FinishReason reason);

// Appends the update's text and tokens to `response`, and on the final
// update sets finish_reason, usage and timings. Unary responses accumulate
// every update into one message; streams send one message per flush.
void AppendUpdate(const GenerationUpdate& update,
                  v1::GenerateResponse* response);

// A chat with tools, on its last message: the calls in `answer` (the whole
// output, in the template's syntax `syntax`) into `response`'s tool_calls,
// with the text outside them as its content. Nothing when the answer does
// not parse as calls. Ids as the OpenAI front end makes them, from
// `request_id`.
void SetToolCalls(ToolCallSyntax syntax, absl::string_view request_id,
                  absl::string_view answer, v1::GenerateResponse* response);

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_GRPC_RESPONSE_CONVERSION_H_
