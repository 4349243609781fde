// The OpenAI-compatible HTTP API on its own port (--http_port), over the
// same engine, limits, bearer token and metrics as gRPC:
//   POST /v1/chat/completions   messages through the model's chat template
//   POST /v1/completions        a text (or token-id) prompt
//   GET  /v1/models             the served model
//   GET  /v1/models/{id}        that model (404 if it is not the served one)
//   GET  /health                200 serving; 503 loading or draining
// `stream: true` answers with server-sent events ("data: {chunk}" ...
// "data: [DONE]"). Errors are OpenAI's JSON error shape with the matching
// status: 400 bad request, 401 missing or wrong token, 404 unknown path or
// model, 405 wrong method, 413 body over --max_request_bytes, 429 queue
// full, 503 loading or draining.
//
// libmicrohttpd, event-driven (a pool of two epoll threads): a streaming
// connection waiting for tokens is suspended and costs no thread; the
// engine thread resumes it when tokens arrive. A client that disconnects
// (its socket closes) has its request aborted at the next token, or by the
// watcher thread (every watch_period) while its prompt is prefilled; the
// watcher also sends idle streams their keep-alive comments.
//
// Thread-safety: SetBackend and StartDraining may be called from any
// thread. Destroy only after the engine has stopped calling back (its
// Shutdown): a callback resumes connections of this server.
#ifndef SPIKESERVE_SERVER_HTTP_OPENAI_HTTP_H_
#define SPIKESERVE_SERVER_HTTP_OPENAI_HTTP_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/auth.h"
#include "server/http/metrics_http.h"
#include "server/serving_backend.h"
#include "server/serving_metrics.h"

struct MHD_Daemon;

namespace spikeserve {

struct OpenAiHttpOptions {
  std::string bind;  // "HOST:PORT" (port 0 = any free port)
  HttpLimits limits;
  size_t max_body_bytes = 4 << 20;  // larger bodies: 413
  // PEM text of the server certificate chain and key: HTTPS; empty: HTTP.
  std::string tls_cert_pem, tls_key_pem;
  // A stream that has sent nothing for this long (a long prefill on a big
  // model) gets an SSE comment (": keep-alive"), which clients skip, so
  // that proxies' read timeouts (nginx: 60 s) do not cut it; 0 = never.
  absl::Duration stream_keepalive = absl::Seconds(15);
  // How often requests in flight are checked for closed connections and
  // streams due a keep-alive: a client gone during its prompt's prefill is
  // aborted within this, not at its first token.
  absl::Duration watch_period = absl::Milliseconds(250);
};

class OpenAiHttpServer {
 public:
  // Listens and answers 503 until SetBackend. `auth`, `metrics` and
  // `calls` must outlive the server; `calls` counts generation requests
  // in flight (shared with gRPC, so that a drain waits for both).
  static absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> Start(
      const OpenAiHttpOptions& options, const TokenAuth* auth,
      ServingMetrics* metrics, CallCounter* calls);
  ~OpenAiHttpServer();
  OpenAiHttpServer(const OpenAiHttpServer&) = delete;
  OpenAiHttpServer& operator=(const OpenAiHttpServer&) = delete;

  void SetBackend(const ServingBackend* backend) { backend_.store(backend); }
  // New generation requests get 503; streams in flight go on.
  void StartDraining() { draining_.store(true); }
  int port() const { return port_; }

 private:
  OpenAiHttpServer() = default;
  struct Call;
  struct Callbacks;
  friend struct Callbacks;

  // The watcher thread's loop over the requests in flight (weak: a
  // finished one drops out).
  void RunWatcher();
  void Track(const std::shared_ptr<Call>& call);

  OpenAiHttpOptions options_;
  const TokenAuth* auth_ = nullptr;
  ServingMetrics* metrics_ = nullptr;
  CallCounter* calls_ = nullptr;
  std::atomic<const ServingBackend*> backend_{nullptr};
  std::atomic<bool> draining_{false};
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;

  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool watch_stop_ = false;                   // under watch_mu_
  std::vector<std::weak_ptr<Call>> watched_;  // under watch_mu_
  std::thread watcher_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_HTTP_OPENAI_HTTP_H_
