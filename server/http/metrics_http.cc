#include "server/http/metrics_http.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "microhttpd.h"
#include "server/http/listen.h"

namespace spikeserve {
namespace {

constexpr char kAllow[] = "GET, HEAD, OPTIONS";
// The Prometheus text exposition format, version 0.0.4.
constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";
// Per-connection memory: request headers and the read buffer must fit
// (libmicrohttpd answers 431 beyond it); the response body is not in it.
constexpr size_t kConnectionMemory = 32 << 10;

// Queues `status` with an empty body and Allow (405, 204, 404).
MHD_Result QueueEmpty(MHD_Connection* conn, unsigned status) {
  MHD_Response* r =
      MHD_create_response_from_buffer(0, nullptr, MHD_RESPMEM_PERSISTENT);
  if (r == nullptr) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, kAllow);
  const MHD_Result ok = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ok;
}

}  // namespace

struct MetricsHttpServer::Callbacks {
  // Called when a request's headers are in, then for each piece of its
  // body, then once more at its end. The answer is queued at the end, so
  // that the connection stays alive for the next (pipelined) request:
  // libmicrohttpd closes a connection whose answer was queued before the
  // request was read. A body is read and discarded, refused requests'
  // included (libmicrohttpd refuses to queue an answer while a body is
  // still arriving).
  static MHD_Result Handle(void* cls, MHD_Connection* conn, const char* url,
                           const char* method, const char* /*version*/,
                           const char* /*upload_data*/,
                           size_t* upload_data_size, void** request_state) {
    static int headers_seen;  // its address marks a request as started
    const bool metrics = std::strcmp(url, "/metrics") == 0;
    const bool get = std::strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    const bool head = std::strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    const bool options = std::strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0;
    const bool serve = metrics && (get || head);
    if (*request_state == nullptr) {
      *request_state = &headers_seen;
      return MHD_YES;
    }
    if (*upload_data_size != 0) {
      *upload_data_size = 0;  // no route takes a body
      return MHD_YES;
    }
    if (options && (metrics || std::strcmp(url, "*") == 0)) {
      return QueueEmpty(conn, MHD_HTTP_NO_CONTENT);
    }
    if (!metrics) return QueueEmpty(conn, MHD_HTTP_NOT_FOUND);
    if (!serve) return QueueEmpty(conn, MHD_HTTP_METHOD_NOT_ALLOWED);
    // The body is rendered for HEAD too: its Content-Length is the GET's.
    auto* body =
        new std::string(static_cast<MetricsHttpServer*>(cls)->render_());
    MHD_Response* r = MHD_create_response_from_buffer_with_free_callback_cls(
        body->size(), body->data(),
        [](void* s) { delete static_cast<std::string*>(s); }, body);
    if (r == nullptr) {
      delete body;
      return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, kContentType);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    const MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
  }

  static void Notify(void* cls, MHD_Connection* /*conn*/,
                     void** /*socket_state*/,
                     MHD_ConnectionNotificationCode event) {
    auto* self = static_cast<MetricsHttpServer*>(cls);
    self->open_connections_.fetch_add(
        event == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
  }
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& bind, const HttpLimits& limits,
    std::function<std::string()> render) {
  if (limits.idle_timeout < absl::Seconds(1) || limits.max_connections < 1) {
    return absl::InvalidArgumentError(
        "HTTP limits: the idle timeout must be at least 1 s and the "
        "connection limit at least 1");
  }
  std::unique_ptr<MetricsHttpServer> s(
      new MetricsHttpServer(std::move(render)));
  absl::StatusOr<int> fd = ListenTcp(bind, "metrics");
  if (!fd.ok()) return fd.status();
  s->port_ = BoundTcpPort(*fd);
  // One epoll thread for every connection (the answer is rendered on it:
  // a scrape takes well under a millisecond to render). The socket is ours
  // until the daemon starts, then the daemon's (it closes it on stop).
  s->daemon_ = MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC, 0, nullptr, nullptr,
      &Callbacks::Handle, s.get(), MHD_OPTION_LISTEN_SOCKET, *fd,
      MHD_OPTION_CONNECTION_TIMEOUT,
      static_cast<unsigned>(absl::ToInt64Seconds(limits.idle_timeout)),
      MHD_OPTION_CONNECTION_LIMIT,
      static_cast<unsigned>(limits.max_connections),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory,
      MHD_OPTION_NOTIFY_CONNECTION, &Callbacks::Notify, s.get(),
      MHD_OPTION_END);
  if (s->daemon_ == nullptr) {
    // The socket is not closed here: whether a failed start closed it is
    // not documented, and a double close could hit another file.
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", bind, ": the HTTP server did not start"));
  }
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

}  // namespace spikeserve
