// spikeserve-health-probe: exits 0 when a gRPC server's health service says
// SERVING, 1 otherwise (NOT_SERVING, unreachable, timeout). For container
// HEALTHCHECKs, and for Kubernetes exec probes when the server runs TLS
// (the kubelet's native gRPC probes speak plaintext only).
//
//   spikeserve-health-probe [--addr 127.0.0.1:50051]
//       [--service spikeserve.v1.Generation] [--timeout 2s]
//       [--tls_ca ca.pem [--tls_server_name name]
//        [--tls_cert client.pem --tls_key client.key]]
#include <chrono>
#include <cstdio>
#include <string>
#include <tuple>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "base/flag_util.h"
#include "base/text_file.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, addr, "127.0.0.1:50051", "Server address.");
ABSL_FLAG(std::string, service, "spikeserve.v1.Generation",
          "Service to check (\"\" = the server as a whole).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(2), "Deadline of the check.");
ABSL_FLAG(std::string, tls_ca, "",
          "Connect over TLS, trusting the certificates in this PEM file (the "
          "server's own, or its CA); empty = plaintext.");
ABSL_FLAG(std::string, tls_server_name, "",
          "With --tls_ca: the name the server's certificate must carry, when "
          "--addr's host is not among them (e.g. 127.0.0.1 in a pod).");
ABSL_FLAG(std::string, tls_cert, "",
          "With --tls_ca: a client certificate (PEM) to present, for a server "
          "that requires one (--tls_client_ca).");
ABSL_FLAG(std::string, tls_key, "", "The --tls_cert's private key (PEM).");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Exits 0 when --addr's grpc.health.v1 says --service is SERVING.");
  spikeserve::ShowOwnFlagsInHelp();
  spikeserve::AcceptDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  std::shared_ptr<grpc::ChannelCredentials> creds =
      grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  const std::string ca = absl::GetFlag(FLAGS_tls_ca);
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  if (ca.empty() && (!absl::GetFlag(FLAGS_tls_server_name).empty() ||
                     !cert.empty() || !key.empty())) {
    std::fprintf(stderr,
                 "--tls_server_name, --tls_cert and --tls_key need --tls_ca\n");
    return 2;
  }
  if (cert.empty() != key.empty()) {
    std::fprintf(stderr, "--tls_cert and --tls_key go together\n");
    return 2;
  }
  if (!ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    for (auto [flag, path, out] :
         {std::tuple<const char*, const std::string*, std::string*>{
              "--tls_ca", &ca, &ssl.pem_root_certs},
          {"--tls_cert", &cert, &ssl.pem_cert_chain},
          {"--tls_key", &key, &ssl.pem_private_key}}) {
      if (path->empty()) continue;
      absl::StatusOr<std::string> pem = spikeserve::ReadTextFile(*path);
      if (!pem.ok()) {
        std::fprintf(stderr, "%s: %s\n", flag,
                     std::string(pem.status().message()).c_str());
        return 1;
      }
      *out = *std::move(pem);
    }
    creds = grpc::SslCredentials(ssl);
    if (const std::string name = absl::GetFlag(FLAGS_tls_server_name);
        !name.empty()) {
      args.SetSslTargetNameOverride(name);
    }
  }
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateCustomChannel(absl::GetFlag(FLAGS_addr), creds, args));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_timeout)));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status s = stub->Check(&ctx, req, &resp);
  if (!s.ok()) {
    std::fprintf(stderr, "health check of %s failed: %s\n",
                 absl::GetFlag(FLAGS_addr).c_str(), s.error_message().c_str());
    return 1;
  }
  const bool serving =
      resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  std::printf("%s\n", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                          resp.status())
                          .c_str());
  return serving ? 0 : 1;
}
