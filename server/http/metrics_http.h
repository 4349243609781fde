// The /metrics endpoint: HTTP/1.1 on libmicrohttpd, event-driven (one epoll
// thread serves every connection), so idle or slow connections hold a few
// KiB each and never a thread:
//   GET /metrics           200, text exposition format, Content-Length
//   HEAD /metrics          200, the same headers, no body
//   OPTIONS /metrics, *    204 with Allow: GET, HEAD, OPTIONS
//   other methods          405 with Allow: GET, HEAD, OPTIONS
//   Upgrade (WebSocket)    ignored: answered as the plain request
//   any other path         404
// Keep-alive and pipelining are on. Limits (HttpLimits): a connection that
// sends nothing for `idle_timeout` is closed (also one that stalls in the
// middle of its request headers); at most `max_connections` are open at
// once, further ones wait in the kernel's accept queue until one closes;
// request headers beyond 32 KiB are refused.
//
// Thread-safety: `render` is called on the server's thread while other
// threads scrape Serialize() or update metrics; open_connections() may be
// called from any thread.
#ifndef SPIKESERVE_SERVER_HTTP_METRICS_HTTP_H_
#define SPIKESERVE_SERVER_HTTP_METRICS_HTTP_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct MHD_Daemon;
struct MHD_Connection;

namespace spikeserve {

// Limits of an HTTP port (flags --http_idle_timeout, --http_max_connections).
struct HttpLimits {
  // A connection silent this long is closed (whole seconds, at least 1).
  absl::Duration idle_timeout = absl::Seconds(10);
  // Connections served at once; more wait to be accepted.
  int max_connections = 1024;
};

class MetricsHttpServer {
 public:
  // Listens on `bind` ("HOST:PORT", "[IPv6]:PORT"; port 0 = any free port)
  // and answers GET /metrics with `render()`. Unavailable with a clear
  // message when the port is taken or the host is not an address here;
  // InvalidArgument for out-of-range limits.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& bind, const HttpLimits& limits,
      std::function<std::string()> render);
  // Stops at once: open connections are closed.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }
  // TCP connections open now (accepted and not yet closed).
  int open_connections() const { return open_connections_.load(); }

 private:
  explicit MetricsHttpServer(std::function<std::string()> render)
      : render_(std::move(render)) {}
  struct Callbacks;  // libmicrohttpd's callbacks (metrics_http.cc)
  friend struct Callbacks;

  std::function<std::string()> render_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
  std::atomic<int> open_connections_{0};
};

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_HTTP_METRICS_HTTP_H_
