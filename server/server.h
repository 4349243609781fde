// The spikeserve process minus its command line: binds the gRPC port
// (health NOT_SERVING, reflection on), loads the model and plan, starts the
// engine, turns health SERVING, and drains on request.
//
// Owns, in order of construction: the gRPC server, the model bundle, the
// engine, the serving backend. Thread-safety: Start/Load/Drain/Shutdown are
// called by one controlling thread; port() and engine() from any.
#ifndef SPIKESERVE_SERVER_SERVER_H_
#define SPIKESERVE_SERVER_SERVER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "runtime/serving/engine.h"
#include "runtime/serving/model_bundle.h"
#include "server/auth.h"
#include "server/chat/chat_prompt.h"
#include "server/grpc/generation_service.h"
#include "server/grpc/request_validation.h"
#include "server/grpc/tls.h"
#include "server/http/openai_http.h"
#include "server/layer_metrics.h"
#include "server/serving_metrics.h"

namespace spikeserve {

struct ServerOptions {
  std::string model_path;  // GGUF file (required)
  std::string plan_path;   // quant plan JSON; empty = `quant`
  // Without a plan: "w8a8" (per-token dynamic scales, no calibration; also
  // when empty) or "fp32". With a plan it must be empty.
  std::string quant;
  int w4_group = 0;  // --quant w4a8's group (ParseW4Group)
  // Jinja chat template file instead of the GGUF's tokenizer.chat_template
  // (empty = the GGUF's, if any).
  std::string chat_template_path;
  // KV pool size in bytes ("2G", "30%" of available memory after load);
  // empty = engine.kv_blocks.
  std::string kv_cache_bytes;
  bool kv_bf16 = false;  // --kv_cache_type bf16
  std::string host = "0.0.0.0";
  int grpc_port = 50051;  // 0 = any free port (tests)
  LmHeadPrecision lm_head = LmHeadPrecision::kBf16;  // see QuantOptions
  int max_request_bytes = 4 << 20;       // bigger: RESOURCE_EXHAUSTED
  int max_streams_per_connection = 128;  // HTTP/2 concurrent streams
  TlsOptions tls;                        // empty: plaintext
  std::string auth_token;                // empty: no bearer-token check
  // /metrics: "HOST:PORT" (port 0 = any free port), empty = no endpoint.
  std::string metrics_bind;
  // The OpenAI-compatible HTTP API: "HOST:PORT" (port 0 = any free port),
  // empty = off. Same TLS (not mutual), token and limits as gRPC.
  std::string http_bind;
  // The model's name in the OpenAI API ("" = the file's name without
  // .gguf).
  std::string served_model_name;
  HttpLimits http_limits;  // timeouts and connection limit of HTTP ports
  // OpenAI API streams silent this long get an SSE keep-alive comment
  // (0 = never; see OpenAiHttpOptions::stream_keepalive).
  absl::Duration http_stream_keepalive = absl::Seconds(15);
  int layer_metrics_every = 1;  // per-layer series every Nth step, 0 = off
  float spike_factor = 50.f;    // spike token: absmax > factor x median
  EngineOptions engine;         // its `prefix` comes from the plan
  RequestLimits limits;         // its `context` comes from the engine
};

class SpikeServer {
 public:
  // Binds and starts serving: health NOT_SERVING, reflection, and the
  // Generation service answering UNAVAILABLE until Load(). Fails with a
  // clear message when the port is taken (SO_REUSEPORT is off).
  static absl::StatusOr<std::unique_ptr<SpikeServer>> Start(
      const ServerOptions& options);
  ~SpikeServer();

  int port() const { return port_; }
  // The OpenAI HTTP API's port (0: off).
  int http_port() const { return http_ ? http_->port() : 0; }
  // Loads the model (and plan), warms up, starts the engine; then health
  // says SERVING. `before_serving` (optional) runs just before health turns
  // SERVING. Errors name the file and the problem.
  absl::Status Load(const std::function<void()>& before_serving = nullptr);
  // Health NOT_SERVING; new generation requests get UNAVAILABLE; waits up
  // to `timeout` for requests in flight to finish, then aborts the rest and
  // stops the gRPC server. Returns the number of requests aborted.
  int Drain(absl::Duration timeout);

  // Waits until no Generate/GenerateStream call is in progress on the
  // server side (its reactor done, hence its blocks freed and published).
  bool WaitForNoCalls(absl::Duration timeout) {
    return service_.calls().WaitIdle(std::chrono::steady_clock::now() +
                                     absl::ToChronoNanoseconds(timeout));
  }

  Engine* engine() { return engine_.get(); }
  ServingMetrics* metrics() { return metrics_.get(); }
  const ServingBackend* backend() const { return backend_.get(); }

 private:
  explicit SpikeServer(const ServerOptions& options) : options_(options) {}
  void SetHealth(bool serving);

  ServerOptions options_;
  std::unique_ptr<TokenAuth> auth_;
  GenerationService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  ModelBundle bundle_;
  std::unique_ptr<ChatPrompt> chat_;  // null: no chat template
  // The engine calls these observers: they outlive it.
  std::unique_ptr<LayerMetrics> layer_metrics_;
  std::unique_ptr<ForwardObserverList> observers_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<ServingBackend> backend_;
  // Stopped in Drain after the engine (whose callbacks resume its
  // connections) and before it is destroyed.
  std::unique_ptr<OpenAiHttpServer> http_;
  // Declared last, destroyed first: /metrics stops before the engine goes.
  std::unique_ptr<ServingMetrics> metrics_;
  bool stopped_ = false;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_SERVER_H_
