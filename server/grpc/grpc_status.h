// The one place where runtime errors (absl::Status) become gRPC statuses.
#ifndef SPIKESERVE_SERVER_GRPC_GRPC_STATUS_H_
#define SPIKESERVE_SERVER_GRPC_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace spikeserve {

// Same code (absl and gRPC share the canonical code space), same message.
grpc::Status ToGrpcStatus(const absl::Status& status);

// "OK", "INVALID_ARGUMENT", ...: the canonical name of a code (metric
// labels, the load generator's error counts).
const char* StatusCodeName(grpc::StatusCode code);

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_GRPC_GRPC_STATUS_H_
