// The spikeserve.v1.Generation service on gRPC's callback API. Handlers
// never block: Generate and GenerateStream validate the request, submit it
// to the engine and return a reactor that the engine thread completes
// (style.md rule 5).
//
// Life cycle: until SetBackend() every RPC but Abort answers UNAVAILABLE
// ("loading"); after StartDraining() new generation requests answer
// UNAVAILABLE while requests in flight finish.
//
// Thread-safety: all methods may be called from any thread.
#ifndef SPIKESERVE_SERVER_GRPC_GENERATION_SERVICE_H_
#define SPIKESERVE_SERVER_GRPC_GENERATION_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "server/auth.h"
#include "server/serving_backend.h"
#include "server/serving_metrics.h"
#include "spikeserve/v1/generation.grpc.pb.h"

namespace spikeserve {

class GenerationService final : public v1::Generation::CallbackService {
 public:
  // Bearer-token check of every RPC (optional; set before the server
  // starts; must outlive the service).
  void SetAuth(const TokenAuth* auth) { auth_ = auth; }
  // Metrics of every RPC (optional; set before the server starts).
  void SetMetrics(ServingMetrics* metrics) { metrics_ = metrics; }
  void SetBackend(const ServingBackend* backend) { backend_.store(backend); }
  void StartDraining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }
  // Generate and GenerateStream calls in progress.
  CallCounter& calls() { return calls_; }

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context,
                                     const v1::GenerateRequest* request,
                                     v1::GenerateResponse* response) override;
  grpc::ServerWriteReactor<v1::GenerateResponse>* GenerateStream(
      grpc::CallbackServerContext* context,
      const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(
      grpc::CallbackServerContext* context,
      const v1::DetokenizeRequest* request,
      v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;

 private:
  // The backend for an authorized call, or null with `*why` set
  // (UNAUTHENTICATED, or UNAVAILABLE while loading).
  const ServingBackend* Backend(const grpc::CallbackServerContext* context,
                                grpc::Status* why) const;
  // Validates and converts a generation request (assigning an id when it
  // has none and taking the call's deadline), or says why not.
  grpc::Status Prepare(const ServingBackend& backend,
                       grpc::CallbackServerContext* context,
                       const v1::GenerateRequest& request,
                       GenerationRequest* out);

  // Finishes a call that needs no engine work, recording its status.
  grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                      const char* rpc,
                                      const grpc::Status& status);

  const TokenAuth* auth_ = nullptr;
  ServingMetrics* metrics_ = nullptr;
  std::atomic<const ServingBackend*> backend_{nullptr};
  std::atomic<bool> draining_{false};
  CallCounter calls_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_GRPC_GENERATION_SERVICE_H_
