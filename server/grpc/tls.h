// Server credentials: plaintext, TLS, or mutual TLS, from PEM files.
#ifndef SPIKESERVE_SERVER_GRPC_TLS_H_
#define SPIKESERVE_SERVER_GRPC_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"

namespace spikeserve {

struct TlsOptions {
  std::string cert_file;  // server certificate chain (PEM); empty = plaintext
  std::string key_file;   // its private key (PEM)
  std::string
      client_ca_file;  // set: clients must present a certificate it signed
};

// Errors name the file at fault (missing, unreadable, not PEM, no
// certificate or key in it, a key that does not match the certificate).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options);

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_GRPC_TLS_H_
