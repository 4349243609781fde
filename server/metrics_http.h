// The /metrics endpoint: HTTP/1.1 on civetweb, the library under
// prometheus-cpp's Exposer, used directly so that every request gets a
// proper answer (the Exposer answered only GET: HEAD and POST got 404, a
// WebSocket upgrade a body without a status line, and of pipelined
// keep-alive requests only the first was answered):
//   GET /metrics           200, text exposition format, Content-Length
//   HEAD /metrics          200, the same headers, no body
//   OPTIONS /metrics       204 with Allow: GET, HEAD, OPTIONS
//   other methods          405 with Allow: GET, HEAD, OPTIONS
//   Upgrade (WebSocket)    ignored: answered as the plain request
//   any other path         404
//   OPTIONS * (asterisk)   no answer, the connection is closed: civetweb
//                          1.15 drops the asterisk form before any callback
//                          (a TODO in its source); Prometheus, probes and
//                          load balancers do not send it.
// Keep-alive and pipelining are on. The listening thread and 2 workers are
// civetweb's; stopping waits for its accept poll (up to 2 s).
//
// Thread-safety: `render` is called on civetweb's threads, concurrently.
#ifndef SPIKESERVE_SERVER_METRICS_HTTP_H_
#define SPIKESERVE_SERVER_METRICS_HTTP_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

struct mg_context;
struct mg_connection;

namespace spikeserve {

class MetricsHttpServer {
 public:
  // Listens on `bind` ("HOST:PORT"; port 0 = any free port) and answers
  // GET /metrics with `render()`. Unavailable with a clear message when the
  // port is taken.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& bind, std::function<std::string()> render);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }

 private:
  explicit MetricsHttpServer(std::function<std::string()> render)
      : render_(std::move(render)) {}
  static int HandleMetrics(mg_connection* conn, void* self);
  static int BeginRequest(mg_connection* conn);

  std::function<std::string()> render_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_METRICS_HTTP_H_
