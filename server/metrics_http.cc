#include "server/metrics_http.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "civetweb.h"

namespace spikeserve {
namespace {

constexpr char kAllow[] = "GET, HEAD, OPTIONS";
// The Prometheus text exposition format, version 0.0.4.
constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// A response without a body: status, Allow, Content-Length 0.
void SendEmpty(mg_connection* conn, int status) {
  mg_response_header_start(conn, status);
  mg_response_header_add(conn, "Allow", kAllow, -1);
  mg_response_header_add(conn, "Content-Length", "0", -1);
  mg_response_header_send(conn);
}

}  // namespace

// Upgrade requests (e.g. WebSocket): civetweb 1.15 routes them to its
// WebSocket path, which (with no WebSocket handler) wrote an error body
// without a status line, and whose connections refuse its response-header
// API. Answered here as plain HTTP/1.1 (RFC 9110: a server may ignore
// Upgrade), the headers written raw, the connection closed after. 0 lets
// civetweb route every other request.
int MetricsHttpServer::BeginRequest(mg_connection* conn) {
  if (mg_get_header(conn, "Upgrade") == nullptr) return 0;
  const mg_request_info* ri = mg_get_request_info(conn);
  const bool metrics =
      ri->local_uri != nullptr && std::strcmp(ri->local_uri, "/metrics") == 0;
  const bool get = std::strcmp(ri->request_method, "GET") == 0;
  const bool head = std::strcmp(ri->request_method, "HEAD") == 0;
  if (metrics && (get || head)) {
    auto* self =
        static_cast<MetricsHttpServer*>(mg_get_user_data(mg_get_context(conn)));
    const std::string body = self->render_();
    mg_printf(conn,
              "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
              kContentType, body.size());
    if (get) mg_write(conn, body.data(), body.size());
    return 200;
  }
  const int status = metrics ? 405 : 404;
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nAllow: %s\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n",
            status, metrics ? "Method Not Allowed" : "Not Found", kAllow);
  return status;
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& bind, std::function<std::string()> render) {
  std::unique_ptr<MetricsHttpServer> s(
      new MetricsHttpServer(std::move(render)));
  mg_init_library(0);
  // No document root: civetweb serves no files. Keep-alive on, so that
  // pipelined requests on one connection are all answered.
  const char* options[] = {
      "listening_ports",   bind.c_str(), "num_threads", "2",
      "enable_keep_alive", "yes",        nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  // civetweb logs a bind failure itself; the status below says it too.
  callbacks.log_message = [](const mg_connection*, const char*) { return 1; };
  callbacks.begin_request = &BeginRequest;
  s->ctx_ = mg_start(&callbacks, s.get(), options);
  if (s->ctx_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", bind,
                     " (port taken, or host not an address of this machine?)"));
  }
  mg_set_request_handler(s->ctx_, "/metrics$", &HandleMetrics, s.get());
  mg_server_port ports[4];
  const int n = mg_get_server_ports(s->ctx_, 4, ports);
  s->port_ = n > 0 ? ports[0].port : 0;
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (ctx_ != nullptr) mg_stop(ctx_);
}

int MetricsHttpServer::HandleMetrics(mg_connection* conn, void* self) {
  const mg_request_info* ri = mg_get_request_info(conn);
  const std::string method = ri->request_method;
  if (method == "GET" || method == "HEAD") {
    const std::string body = static_cast<MetricsHttpServer*>(self)->render_();
    mg_response_header_start(conn, 200);
    mg_response_header_add(conn, "Content-Type", kContentType, -1);
    mg_response_header_add(conn, "Content-Length",
                           std::to_string(body.size()).c_str(), -1);
    mg_response_header_add(conn, "Cache-Control", "no-store", -1);
    mg_response_header_send(conn);
    if (method == "GET") mg_write(conn, body.data(), body.size());
    return 200;
  }
  if (method == "OPTIONS") {
    SendEmpty(conn, 204);
    return 204;
  }
  SendEmpty(conn, 405);
  return 405;
}

}  // namespace spikeserve
