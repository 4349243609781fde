#include "server/http/openai_http.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "microhttpd.h"
#include "server/grpc/request_validation.h"
#include "server/http/listen.h"
#include "server/http/openai_protocol.h"

namespace spikeserve {
namespace {

constexpr char kJson[] = "application/json";
// Headers and the read buffer of one connection (bodies are kept apart).
constexpr size_t kConnectionMemory = 64 << 10;

enum class Route { kChat, kCompletions, kModels, kModel, kHealth, kUnknown };

constexpr char kModelPrefix[] = "/v1/models/";

Route RouteOf(const char* url) {
  if (std::strcmp(url, "/v1/chat/completions") == 0) return Route::kChat;
  if (std::strcmp(url, "/v1/completions") == 0) return Route::kCompletions;
  if (std::strcmp(url, "/v1/models") == 0) return Route::kModels;
  // GET /v1/models/{id} (openai-python's models.retrieve): the id is the
  // rest of the path, decoded by libmicrohttpd (it may hold '/').
  if (absl::StartsWith(url, kModelPrefix) &&
      url[sizeof(kModelPrefix) - 1] != '\0') {
    return Route::kModel;
  }
  if (std::strcmp(url, "/health") == 0) return Route::kHealth;
  return Route::kUnknown;
}

// The metrics' label of a route (a bounded set).
const char* RouteName(Route r) {
  switch (r) {
    case Route::kChat:
      return "/v1/chat/completions";
    case Route::kCompletions:
      return "/v1/completions";
    case Route::kModels:
      return "/v1/models";
    case Route::kModel:
      return "/v1/models/{id}";
    case Route::kHealth:
      return "/health";
    default:
      return "other";
  }
}

// The canonical code an HTTP status counts as in spikeserve_requests_total.
grpc::StatusCode CodeOfHttp(int status) {
  switch (status) {
    case 200:
      return grpc::StatusCode::OK;
    case 401:
      return grpc::StatusCode::UNAUTHENTICATED;
    case 404:
      return grpc::StatusCode::NOT_FOUND;
    case 405:
      return grpc::StatusCode::UNIMPLEMENTED;
    // 429 is the full queue; a body over the limit (413) is the client's
    // error, as gRPC's oversized messages never reach the count: the
    // "requests refused" alert means capacity.
    case 429:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case 499:
      return grpc::StatusCode::CANCELLED;
    case 503:
      return grpc::StatusCode::UNAVAILABLE;
    default:
      return status < 500 ? grpc::StatusCode::INVALID_ARGUMENT
                          : grpc::StatusCode::INTERNAL;
  }
}

MHD_Result QueueText(MHD_Connection* conn, unsigned status, std::string body,
                     const char* type, const char* allow = nullptr) {
  auto* held = new std::string(std::move(body));
  MHD_Response* r = MHD_create_response_from_buffer_with_free_callback_cls(
      held->size(), held->data(),
      [](void* s) { delete static_cast<std::string*>(s); }, held);
  if (r == nullptr) {
    delete held;
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (allow != nullptr)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  // Queue full, loading or draining: clients (openai-python among them)
  // wait this many seconds before they retry.
  if (status == 429 || status == 503) {
    MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
  }
  const MHD_Result ok = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ok;
}

// True when the peer has closed (or reset) its end. POLLRDHUP reports the
// FIN even behind bytes the server has not read: with TLS a client's close
// sends close_notify first, and a suspended connection is not read, so a
// peek at the next byte (the way before) never saw the end and the request
// ran to max_tokens holding its KV blocks. Reads nothing.
bool PeerClosed(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) == 1 &&
         (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace

// One HTTP request, shared by the connection (libmicrohttpd's threads) and
// the engine's callback (the engine thread); fields under `mu` once
// submitted.
struct OpenAiHttpServer::Call {
  explicit Call(ServingMetrics* m) : metrics(m) {}

  Route route = Route::kUnknown;
  std::string method;
  std::string model;  // Route::kModel: the id asked for
  MHD_Connection* conn = nullptr;
  int fd = -1;
  // Reading the body.
  std::string body;
  bool too_large = false;
  // Generation (set before submission, then read-only).
  Engine* engine = nullptr;
  std::string id;
  bool stream = false, include_usage = false;
  OpenAiAnswerContext ctx;
  RequestMetrics metrics;  // engine thread only

  std::mutex mu;
  bool submitted = false;        // the engine holds the request
  bool counted = false;          // in `calls` (Done at completion)
  bool finished = false;         // the engine's final update came
  bool suspended = false;        // the connection waits for the engine
  bool connection_done = false;  // libmicrohttpd is finished with it
  bool client_gone = false;      // closed before the end: aborted
  bool first = true;             // no stream event sent yet
  std::string pending;           // stream bytes not yet handed over
  absl::Time last_sent;          // stream: when bytes were last queued
  size_t pending_off = 0;
  ToolCallStream held;                 // stream with tools: held text
  std::string text;                    // unary: the whole text
  std::vector<GeneratedToken> tokens;  // unary: every token
  int answer_status = 200;             // unary: the answer, once finished
  std::string answer;
};

struct OpenAiHttpServer::Callbacks {
  using CallPtr = std::shared_ptr<Call>;

  static void Record(OpenAiHttpServer* self, Route route, int status) {
    if (self->metrics_ != nullptr) {
      self->metrics_->OnRpcDone(RouteName(route), CodeOfHttp(status), "http");
    }
  }
  static MHD_Result Error(OpenAiHttpServer* self, MHD_Connection* conn,
                          Route route, const OpenAiError& e,
                          const char* allow = nullptr) {
    Record(self, route, e.http_status);
    return QueueText(conn, unsigned(e.http_status), ErrorJson(e), kJson, allow);
  }
  static MHD_Result Ok(OpenAiHttpServer* self, MHD_Connection* conn,
                       Route route, std::string body) {
    Record(self, route, 200);
    return QueueText(conn, 200, std::move(body), kJson);
  }

  static MHD_Result Handle(void* cls, MHD_Connection* conn, const char* url,
                           const char* method, const char* /*version*/,
                           const char* upload_data, size_t* upload_data_size,
                           void** req_cls) {
    auto* self = static_cast<OpenAiHttpServer*>(cls);
    if (*req_cls == nullptr) {  // the headers are in
      auto* holder = new CallPtr(std::make_shared<Call>(self->metrics_));
      Call& c = **holder;
      c.route = RouteOf(url);
      if (c.route == Route::kModel) c.model = url + sizeof(kModelPrefix) - 1;
      c.method = method;
      c.conn = conn;
      if (const MHD_ConnectionInfo* info = MHD_get_connection_info(
              conn, MHD_CONNECTION_INFO_CONNECTION_FD)) {
        c.fd = info->connect_fd;
      }
      *req_cls = holder;
      // A declared length over the limit is refused before the body comes
      // (the connection is closed after the answer).
      const char* length = MHD_lookup_connection_value(
          conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
      uint64_t declared = 0;
      if (length != nullptr && absl::SimpleAtoi(length, &declared) &&
          declared > self->options_.max_body_bytes) {
        return Error(self, conn, c.route, TooLarge(self));
      }
      // The token too, before any body is buffered: a client without it
      // could otherwise hold --max_request_bytes per connection.
      if (self->auth_ != nullptr && c.route != Route::kUnknown &&
          c.route != Route::kHealth) {
        absl::Status s = self->auth_->CheckHeader(MHD_lookup_connection_value(
            conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION));
        if (!s.ok()) return Error(self, conn, c.route, ErrorFromStatus(s));
      }
      return MHD_YES;
    }
    Call& c = **static_cast<CallPtr*>(*req_cls);
    if (*upload_data_size != 0) {
      if (!c.too_large) {
        if (c.body.size() + *upload_data_size > self->options_.max_body_bytes) {
          c.too_large = true;
          std::string().swap(c.body);
        } else {
          c.body.append(upload_data, *upload_data_size);
        }
      }
      *upload_data_size = 0;
      return MHD_YES;
    }
    if (c.submitted) return Resumed(self, c);  // a unary answer is ready
    return Route_(self, conn, static_cast<CallPtr*>(*req_cls));
  }

  static OpenAiError TooLarge(const OpenAiHttpServer* self) {
    OpenAiError e;
    e.http_status = 413;
    e.message = absl::StrCat("the request body is larger than ",
                             self->options_.max_body_bytes,
                             " bytes (--max_request_bytes)");
    return e;
  }

  static MHD_Result Route_(OpenAiHttpServer* self, MHD_Connection* conn,
                           CallPtr* holder) {
    Call& c = **holder;
    const bool get = c.method == MHD_HTTP_METHOD_GET;
    const bool post = c.method == MHD_HTTP_METHOD_POST;
    if (c.route == Route::kUnknown) {
      OpenAiError e;
      e.http_status = 404;
      e.type = "not_found_error";
      e.message =
          "no such route; the API serves /v1/chat/completions, "
          "/v1/completions, /v1/models, /v1/models/{id} and /health";
      return Error(self, conn, c.route, e);
    }
    const bool wants_post =
        c.route == Route::kChat || c.route == Route::kCompletions;
    if (wants_post ? !post : !get) {
      OpenAiError e;
      e.http_status = 405;
      e.message =
          absl::StrCat("method ", c.method, " is not allowed here; use ",
                       wants_post ? "POST" : "GET");
      return Error(self, conn, c.route, e, wants_post ? "POST" : "GET");
    }
    if (c.too_large) return Error(self, conn, c.route, TooLarge(self));
    const ServingBackend* b = self->backend_.load();
    const bool draining = self->draining_.load();
    if (c.route == Route::kHealth) {
      if (b != nullptr && !draining)
        return Ok(self, conn, c.route, R"({"status":"ok"})");
      OpenAiError e = Unavailable(b == nullptr);
      return Error(self, conn, c.route, e);
    }
    if (self->auth_ != nullptr) {
      absl::Status s = self->auth_->CheckHeader(MHD_lookup_connection_value(
          conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION));
      if (!s.ok()) return Error(self, conn, c.route, ErrorFromStatus(s));
    }
    const bool listing = c.route == Route::kModels || c.route == Route::kModel;
    if (b == nullptr || (draining && !listing)) {
      return Error(self, conn, c.route, Unavailable(b == nullptr));
    }
    if (c.route == Route::kModels) {
      return Ok(self, conn, c.route, ModelsJson(b->model_id, StartTime()));
    }
    if (c.route == Route::kModel) {
      if (c.model != b->model_id) {
        return Error(self, conn, c.route, NoSuchModel(c.model, *b, ""));
      }
      return Ok(self, conn, c.route, ModelJson(b->model_id, StartTime()));
    }
    return Generate(self, conn, holder, *b);
  }

  // 404 for a model id this server does not serve (param: the request's
  // field that named it, if any).
  static OpenAiError NoSuchModel(const std::string& model,
                                 const ServingBackend& b, const char* param) {
    OpenAiError e;
    e.http_status = 404;
    e.type = "not_found_error";
    e.param = param;
    e.code = "model_not_found";
    e.message = absl::StrCat("the model '", model,
                             "' does not exist; this server serves '",
                             b.model_id, "' (GET /v1/models)");
    return e;
  }

  static OpenAiError Unavailable(bool loading) {
    OpenAiError e = ErrorFromStatus(absl::UnavailableError(
        loading ? "the model is still loading; retry shortly"
                : "the server is draining; retry on another replica"));
    return e;
  }

  // The server's start (the models list's "created").
  static int64_t StartTime() {
    static const int64_t t = int64_t(std::time(nullptr));
    return t;
  }

  static MHD_Result Generate(OpenAiHttpServer* self, MHD_Connection* conn,
                             CallPtr* holder, const ServingBackend& b) {
    Call& c = **holder;
    const OpenAiEndpoint endpoint = c.route == Route::kChat
                                        ? OpenAiEndpoint::kChat
                                        : OpenAiEndpoint::kCompletion;
    OpenAiError err;
    absl::StatusOr<OpenAiRequest> req =
        ParseOpenAiRequest(endpoint, c.body, &err);
    std::string().swap(c.body);
    if (!req.ok()) return Error(self, conn, c.route, err);
    if (!req->model.empty() && req->model != b.model_id) {
      return Error(self, conn, c.route, NoSuchModel(req->model, b, "model"));
    }
    absl::StatusOr<GenerationRequest> g = ToGenerationRequest(
        req->request, *b.tokenizer, *b.config, b.limits, b.chat);
    if (!g.ok()) return Error(self, conn, c.route, ErrorFromStatus(g.status()));
    absl::StatusOr<std::string> id = NewServerRequestId();
    if (!id.ok())
      return Error(self, conn, c.route, ErrorFromStatus(id.status()));
    g->id = *id;
    c.id = *std::move(id);
    c.engine = b.engine;
    c.stream = req->stream;
    c.include_usage = req->stream && req->include_usage;
    c.ctx.endpoint = endpoint;
    c.ctx.id =
        absl::StrCat(endpoint == OpenAiEndpoint::kChat ? "chatcmpl-" : "cmpl-",
                     c.id.substr(kServerRequestIdPrefix.size()));
    c.ctx.model = b.model_id;
    c.ctx.created = int64_t(std::time(nullptr));
    c.ctx.logprobs = req->logprobs;
    c.ctx.tokenizer = b.tokenizer;
    if (req->tools && b.chat != nullptr) {
      c.ctx.tool_calls = b.chat->tool_call_syntax();
    }
    {
      std::lock_guard<std::mutex> lock(c.mu);
      c.submitted = true;
      c.counted = true;
    }
    self->calls_->Add();
    CallPtr shared = *holder;
    absl::Status s = b.engine->Submit(
        *std::move(g), [self, shared](const GenerationUpdate& u) {
          OnUpdate(self, shared, u);
        });
    if (!s.ok()) {
      {
        std::lock_guard<std::mutex> lock(c.mu);
        c.submitted = false;
        c.counted = false;
      }
      self->calls_->Done();
      return Error(self, conn, c.route, ErrorFromStatus(s));
    }
    {
      std::lock_guard<std::mutex> lock(c.mu);
      c.last_sent = absl::Now();
    }
    self->Track(shared);
    if (c.stream) {
      MHD_Response* r = MHD_create_response_from_callback(
          MHD_SIZE_UNKNOWN, 16 << 10, &Read, new CallPtr(shared),
          [](void* p) { delete static_cast<CallPtr*>(p); });
      if (r == nullptr) return MHD_NO;
      MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                              "text/event-stream");
      MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
      MHD_add_response_header(r, "X-Accel-Buffering", "no");
      const MHD_Result ok = MHD_queue_response(conn, 200, r);
      MHD_destroy_response(r);
      return ok;
    }
    std::unique_lock<std::mutex> lock(c.mu);
    if (c.finished) {
      lock.unlock();
      return Resumed(self, c);
    }
    c.suspended = true;
    MHD_suspend_connection(conn);
    return MHD_YES;
  }

  // A unary call's answer, once the engine has finished it.
  static MHD_Result Resumed(OpenAiHttpServer* /*self*/, Call& c) {
    std::string answer;
    int status;
    {
      std::lock_guard<std::mutex> lock(c.mu);
      if (!c.finished) {  // not ours to answer yet
        c.suspended = true;
        MHD_suspend_connection(c.conn);
        return MHD_YES;
      }
      answer = std::move(c.answer);
      status = c.answer_status;
    }
    return QueueText(c.conn, unsigned(status), std::move(answer), kJson);
  }

  // The engine thread: text, tokens and the end of a request.
  static void OnUpdate(OpenAiHttpServer* self, const CallPtr& c,
                       const GenerationUpdate& u) {
    c->metrics.OnUpdate(u);
    bool resume = false, abort = false;
    {
      std::lock_guard<std::mutex> lock(c->mu);
      if (c->stream) {
        c->last_sent = absl::Now();
        absl::StrAppend(&c->pending, StreamEvents(c->ctx, u, c->first,
                                                  c->include_usage, &c->held));
        c->first = false;
      } else {
        c->text += u.text;
        c->tokens.insert(c->tokens.end(), u.tokens.begin(), u.tokens.end());
      }
      if (u.finished) {
        c->finished = true;
        int status = 200;
        if (c->client_gone && u.finish_reason == FinishReason::kAborted) {
          status = 499;  // nginx's "client closed request", for the metrics
        } else if (!u.status.ok()) {
          const OpenAiError e = ErrorFromStatus(u.status);
          status = e.http_status;
          if (!c->stream) c->answer = ErrorJson(e);
        }
        if (!c->stream && u.status.ok()) {
          c->answer = CompletionJson(c->ctx, c->text, c->tokens, u);
        }
        c->answer_status = status == 499 ? 200 : status;
        c->metrics.OnFinish(RouteName(c->route), CodeOfHttp(status), "http");
      } else if (!c->client_gone && !c->connection_done && PeerClosed(c->fd)) {
        c->client_gone = true;
        abort = true;
      }
      // A stream resumes for every update; a unary call for its end.
      if (c->suspended && !c->connection_done && (c->stream || c->finished)) {
        c->suspended = false;
        resume = true;
      }
    }
    if (abort) c->engine->Abort(c->id);
    // Outside the lock: libmicrohttpd's own lock is never taken inside ours
    // here, while its threads take ours inside theirs. A suspended
    // connection cannot complete, so `conn` is alive until this resumes it.
    if (resume) MHD_resume_connection(c->conn);
  }

  // The watcher thread, for one request in flight: a closed connection
  // aborts it (during a prefill no update comes to notice it), an idle
  // stream gets a keep-alive comment.
  static void Watch(OpenAiHttpServer* self, const CallPtr& c) {
    bool abort = false, resume = false;
    {
      std::lock_guard<std::mutex> lock(c->mu);
      if (c->finished || c->connection_done || c->client_gone) return;
      // Under the lock: libmicrohttpd closes the fd only after Completed,
      // which takes it.
      if (PeerClosed(c->fd)) {
        c->client_gone = true;
        abort = true;
      } else if (c->stream &&
                 self->options_.stream_keepalive > absl::ZeroDuration() &&
                 c->pending_off == c->pending.size() &&
                 absl::Now() - c->last_sent >=
                     self->options_.stream_keepalive) {
        c->last_sent = absl::Now();
        c->pending.append(": keep-alive\n\n");
        if (c->suspended) {
          c->suspended = false;
          resume = true;
        }
      }
    }
    if (abort) c->engine->Abort(c->id);
    // A suspended connection cannot complete: `conn` is alive.
    if (resume) MHD_resume_connection(c->conn);
  }

  // libmicrohttpd asks for stream bytes; none yet: suspend until OnUpdate.
  static ssize_t Read(void* cls, uint64_t /*pos*/, char* buf, size_t max) {
    Call& c = **static_cast<CallPtr*>(cls);
    std::lock_guard<std::mutex> lock(c.mu);
    const size_t left = c.pending.size() - c.pending_off;
    if (left > 0) {
      const size_t n = std::min(left, max);
      std::memcpy(buf, c.pending.data() + c.pending_off, n);
      c.pending_off += n;
      if (c.pending_off == c.pending.size()) {
        c.pending.clear();
        c.pending_off = 0;
      }
      return ssize_t(n);
    }
    if (c.finished) return MHD_CONTENT_READER_END_OF_STREAM;
    c.suspended = true;
    MHD_suspend_connection(c.conn);
    return 0;
  }

  // The request is over for libmicrohttpd (answered, or the connection
  // closed): a generation still running is aborted.
  static void Completed(void* cls, MHD_Connection* /*conn*/, void** req_cls,
                        MHD_RequestTerminationCode /*why*/) {
    auto* self = static_cast<OpenAiHttpServer*>(cls);
    auto* holder = static_cast<CallPtr*>(*req_cls);
    if (holder == nullptr) return;
    Call& c = **holder;
    bool abort = false, counted = false;
    {
      std::lock_guard<std::mutex> lock(c.mu);
      c.connection_done = true;
      if (c.submitted && !c.finished && !c.client_gone) {
        c.client_gone = true;
        abort = true;
      }
      counted = c.counted;
      c.counted = false;
    }
    if (abort) c.engine->Abort(c.id);
    if (counted) self->calls_->Done();
    delete holder;
    *req_cls = nullptr;
  }
};

absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> OpenAiHttpServer::Start(
    const OpenAiHttpOptions& options, const TokenAuth* auth,
    ServingMetrics* metrics, CallCounter* calls) {
  if (options.limits.idle_timeout < absl::Seconds(1) ||
      options.limits.max_connections < 1) {
    return absl::InvalidArgumentError(
        "HTTP limits: the idle timeout must be at least 1 s and the "
        "connection limit at least 1");
  }
  const bool tls = !options.tls_cert_pem.empty();
  if (tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
    return absl::FailedPreconditionError(
        "the HTTP API cannot serve TLS: this libmicrohttpd has no TLS");
  }
  std::unique_ptr<OpenAiHttpServer> s(new OpenAiHttpServer());
  s->options_ = options;
  s->auth_ = auth;
  s->metrics_ = metrics;
  s->calls_ = calls;
  absl::StatusOr<int> fd = ListenTcp(options.bind, "the HTTP API");
  if (!fd.ok()) return fd.status();
  s->port_ = BoundTcpPort(*fd);
  unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
  if (tls) flags |= MHD_USE_TLS;
  std::vector<MHD_OptionItem> opts = {
      {MHD_OPTION_LISTEN_SOCKET, *fd, nullptr},
      // Two epoll threads: parsing a large request body or rendering a
      // template on one does not hold up the streams on the other.
      {MHD_OPTION_THREAD_POOL_SIZE, 2, nullptr},
      {MHD_OPTION_CONNECTION_TIMEOUT,
       intptr_t(absl::ToInt64Seconds(options.limits.idle_timeout)), nullptr},
      {MHD_OPTION_CONNECTION_LIMIT, intptr_t(options.limits.max_connections),
       nullptr},
      {MHD_OPTION_CONNECTION_MEMORY_LIMIT, intptr_t(kConnectionMemory),
       nullptr},
      {MHD_OPTION_NOTIFY_COMPLETED,
       reinterpret_cast<intptr_t>(&Callbacks::Completed), s.get()},
  };
  if (tls) {
    opts.push_back({MHD_OPTION_HTTPS_MEM_CERT, 0,
                    const_cast<char*>(s->options_.tls_cert_pem.c_str())});
    opts.push_back({MHD_OPTION_HTTPS_MEM_KEY, 0,
                    const_cast<char*>(s->options_.tls_key_pem.c_str())});
  }
  opts.push_back({MHD_OPTION_END, 0, nullptr});
  s->daemon_ =
      MHD_start_daemon(flags, 0, nullptr, nullptr, &Callbacks::Handle, s.get(),
                       MHD_OPTION_ARRAY, opts.data(), MHD_OPTION_END);
  if (s->daemon_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve the HTTP API on ", options.bind,
                     ": the HTTP server did not start",
                     tls ? " (check the TLS files)" : ""));
  }
  s->watcher_ = std::thread([p = s.get()] { p->RunWatcher(); });
  return s;
}

void OpenAiHttpServer::Track(const std::shared_ptr<Call>& call) {
  std::lock_guard<std::mutex> lock(watch_mu_);
  watched_.push_back(call);
}

void OpenAiHttpServer::RunWatcher() {
  std::unique_lock<std::mutex> lock(watch_mu_);
  std::vector<std::shared_ptr<Call>> calls;
  while (!watch_stop_) {
    watch_cv_.wait_for(lock, absl::ToChronoNanoseconds(options_.watch_period),
                       [&] { return watch_stop_; });
    if (watch_stop_) break;
    // Requests that are over (their Call freed) drop out; a finished one
    // not yet freed is checked once more, cheaply.
    watched_.erase(std::remove_if(watched_.begin(), watched_.end(),
                                  [&](const std::weak_ptr<Call>& w) {
                                    std::shared_ptr<Call> c = w.lock();
                                    if (c == nullptr) return true;
                                    calls.push_back(std::move(c));
                                    return false;
                                  }),
                   watched_.end());
    lock.unlock();
    for (const std::shared_ptr<Call>& c : calls) Callbacks::Watch(this, c);
    calls.clear();
    lock.lock();
  }
}

OpenAiHttpServer::~OpenAiHttpServer() {
  // The watcher resumes connections: it stops before the daemon does.
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    watch_stop_ = true;
  }
  watch_cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

}  // namespace spikeserve
