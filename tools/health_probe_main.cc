// spikeserve-health-probe: exits 0 when a gRPC server's health service says
// SERVING, 1 otherwise (NOT_SERVING, unreachable, timeout). For container
// HEALTHCHECKs; Kubernetes uses its native gRPC probes instead.
//
//   spikeserve-health-probe [--addr 127.0.0.1:50051]
//       [--service spikeserve.v1.Generation] [--timeout 2s]
#include <chrono>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "base/flag_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, addr, "127.0.0.1:50051", "Server address.");
ABSL_FLAG(std::string, service, "spikeserve.v1.Generation",
          "Service to check (\"\" = the server as a whole).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(2), "Deadline of the check.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Exits 0 when --addr's grpc.health.v1 says --service is SERVING.");
  spikeserve::AcceptDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      absl::GetFlag(FLAGS_addr), grpc::InsecureChannelCredentials()));
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
