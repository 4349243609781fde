// Engine updates (native types) into GenerateResponse messages.
#ifndef SPIKESERVE_SERVER_GRPC_RESPONSE_CONVERSION_H_
#define SPIKESERVE_SERVER_GRPC_RESPONSE_CONVERSION_H_

#include "runtime/serving/engine.h"
#include "spikeserve/v1/generation.pb.h"

namespace spikeserve {

v1::FinishReason ToProto(FinishReason reason);

// Appends the update's text and tokens to `response`, and on the final
// update sets finish_reason, usage and timings. Unary responses accumulate
// every update into one message; streams send one message per flush.
void AppendUpdate(const GenerationUpdate& update,
                  v1::GenerateResponse* response);

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_GRPC_RESPONSE_CONVERSION_H_
