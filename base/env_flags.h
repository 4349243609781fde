// Flags from the environment, for containers: SPIKESERVE_GRPC_PORT=50051
// sets --grpc_port. Applied before the command line is parsed, so a flag
// given on the command line wins.
#ifndef SPIKESERVE_BASE_ENV_FLAGS_H_
#define SPIKESERVE_BASE_ENV_FLAGS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace spikeserve {

// For every flag defined in the program's server/ sources, reads
// <prefix><FLAG NAME IN UPPER CASE> and, when set, parses it into the flag.
// A value that does not parse is an InvalidArgument naming the variable.
absl::Status ApplyEnvironmentFlags(absl::string_view prefix);

}  // namespace spikeserve

#endif  // SPIKESERVE_BASE_ENV_FLAGS_H_
