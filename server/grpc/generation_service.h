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
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "runtime/model/model_config.h"
#include "runtime/serving/engine.h"
#include "runtime/text/tokenizer.h"
#include "server/auth.h"
#include "server/grpc/request_validation.h"
#include "server/serving_metrics.h"
#include "spikeserve/v1/generation.grpc.pb.h"

namespace spikeserve {

// What the service serves once the model is loaded. Owned by the caller;
// must outlive the service's last RPC.
struct ServingBackend {
  Engine* engine = nullptr;
  const Tokenizer* tokenizer = nullptr;
  const ModelConfig* config = nullptr;
  RequestLimits limits;
  const ChatPrompt* chat = nullptr;  // null: the model has no chat template
  v1::ModelInfo info;                // GetModelInfo's answer
};

// Counts generation calls whose reactors are alive, so that a drain can
// wait for them. Thread-safe.
class CallCounter {
 public:
  void Add() {
    std::lock_guard<std::mutex> lock(mu_);
    ++active_;
  }
  void Done() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--active_ == 0) idle_.notify_all();
  }
  // True when no call is active by `deadline`.
  bool WaitIdle(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return idle_.wait_until(lock, deadline, [&] { return active_ == 0; });
  }
  int active() const {
    std::lock_guard<std::mutex> lock(mu_);
    return active_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable idle_;
  int active_ = 0;
};

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
