// Bearer-token authorization of the Generation RPCs ("authorization:
// Bearer <token>" metadata). Health checks stay open (probes carry no
// token). The token is compared in constant time and never logged.
//
// Why not a gRPC interceptor: gRPC C++ 1.51's server interceptors cannot end
// a call with a status of their choosing (only cancel it), so the service
// checks the token first thing in every handler, before any work.
#ifndef SPIKESERVE_SERVER_AUTH_H_
#define SPIKESERVE_SERVER_AUTH_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"

namespace spikeserve {

class TokenAuth {
 public:
  // An empty token disables the check.
  explicit TokenAuth(std::string token) : token_(std::move(token)) {}
  bool enabled() const { return !token_.empty(); }
  // OK, or UNAUTHENTICATED ("missing bearer token" / "invalid token").
  grpc::Status Check(const grpc::ServerContextBase& context) const;
  // The same for an HTTP "Authorization" header's value (null: absent).
  absl::Status CheckHeader(const char* authorization) const;

 private:
  std::string token_;
};

// The token in `path` (surrounding whitespace removed). Errors name the
// file, never its content.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// The server's bearer token from --auth_token_file (`file`, "" = unset) or
// else from the environment variable SPIKESERVE_AUTH_TOKEN (`env`, null =
// unset). Both are trimmed of surrounding whitespace (a trailing newline
// from `echo` or a secret file). "" means no token is configured (auth
// off); a token that is set but empty or blank is an error, never "auth
// off": failing open would serve everyone.
absl::StatusOr<std::string> ResolveAuthToken(const std::string& file,
                                             const char* env);

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_AUTH_H_
