// The one place where runtime errors (absl::Status) become gRPC statuses.
#ifndef SPIKESERVE_SERVER_GRPC_STATUS_H_
#define SPIKESERVE_SERVER_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace spikeserve {

// Same code (absl and gRPC share the canonical code space), same message.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_GRPC_STATUS_H_
