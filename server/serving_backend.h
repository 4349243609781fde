// What the front ends (gRPC, OpenAI HTTP) serve once the model is loaded,
// and the count of generation calls in flight that a drain waits for.
#ifndef SPIKESERVE_SERVER_SERVING_BACKEND_H_
#define SPIKESERVE_SERVER_SERVING_BACKEND_H_

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

#include "runtime/model/model_config.h"
#include "runtime/serving/engine.h"
#include "runtime/text/tokenizer.h"
#include "server/chat/chat_prompt.h"
#include "server/grpc/request_validation.h"
#include "spikeserve/v1/generation.pb.h"

namespace spikeserve {

// What the front ends serve once the model is loaded. Owned by the caller;
// must outlive the service's last RPC.
struct ServingBackend {
  Engine* engine = nullptr;
  const Tokenizer* tokenizer = nullptr;
  const ModelConfig* config = nullptr;
  RequestLimits limits;
  const ChatPrompt* chat = nullptr;  // null: the model has no chat template
  v1::ModelInfo info;                // GetModelInfo's answer
  std::string model_id;              // the OpenAI API's model name
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

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_SERVING_BACKEND_H_
