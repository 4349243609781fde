#include "tests/server/server_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "runtime/gguf/gguf_reader.h"
#include "runtime/model/model_config.h"
#include "runtime/quant/quant_plan.h"
#include "tests/fixtures/gguf_builder.h"

namespace spikeserve::testing {

namespace {

std::string TempDir() {
  const std::string dir =
      (std::filesystem::temp_directory_path() /
       ("spikeserve-server-test-" + std::to_string(::getpid())))
          .string();
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace

TinyModelFiles WriteModelAndPlan(const std::string& gguf,
                                 const std::string& name,
                                 std::vector<int32_t> prefix) {
  TinyModelFiles f;
  f.model = TempDir() + "/" + name + ".gguf";
  {
    std::ofstream out(f.model, std::ios::binary);
    out.write(gguf.data(), std::streamsize(gguf.size()));
    EXPECT_TRUE(out.good());
  }
  // A plan for exactly this file: W8A8 per-tensor dynamic + QFeP prefix.
  auto file = GgufFile::FromBuffer(
      reinterpret_cast<const uint8_t*>(gguf.data()), gguf.size());
  EXPECT_TRUE(file.ok()) << file.status();
  auto config = ReadModelConfig(**file);
  EXPECT_TRUE(config.ok()) << config.status();
  f.context = config->context_length;
  v1::QuantPlan plan;
  plan.set_version(1);
  *plan.mutable_model() = FingerprintModel(**file, *config);
  plan.set_activation_mode(v1::PER_TENSOR_DYNAMIC);
  f.prefix = std::move(prefix);
  plan.mutable_qfep()->mutable_token_ids()->Add(f.prefix.begin(),
                                                f.prefix.end());
  f.plan = TempDir() + "/" + name + "-plan.json";
  EXPECT_TRUE(WriteQuantPlan(plan, f.plan).ok());
  return f;
}

const TinyModelFiles& GetTinyModelFiles() {
  static const TinyModelFiles* files = new TinyModelFiles(
      WriteModelAndPlan(TinyLlama({.layers = 2,
                                   .hidden = 128,
                                   .heads = 4,
                                   .kv_heads = 2,
                                   .ffn = 256,
                                   .context = 2048})
                            .Build(),
                        "tiny", {298, 40, 41}));  // <|bos|> and two byte tokens
  return *files;
}

int ConnectLocal(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string HttpGet(int port, const std::string& path) {
  return HttpRequest(port, "GET", path).body;
}

HttpReply HttpRequest(int port, const std::string& method,
                      const std::string& path, const std::string& body,
                      const std::string& extra_headers) {
  HttpReply reply;
  const int fd = ConnectLocal(port);
  if (fd < 0) return reply;
  std::string response;
  {
    std::string req = method + " " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n" +
                      extra_headers;
    if (!body.empty() || method == "POST") {
      req += "Content-Type: application/json\r\nContent-Length: " +
             std::to_string(body.size()) + "\r\n";
    }
    req += "\r\n" + body;
    // The server may answer (413) and close before the whole body is sent.
    size_t sent = 0;
    while (sent < req.size()) {
      const ssize_t n =
          send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += size_t(n);
    }
    char buf[65536];
    for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) {
      response.append(buf, size_t(n));
    }
  }
  close(fd);
  const size_t end = response.find("\r\n\r\n");
  if (end == std::string::npos || response.size() < 12) return reply;
  reply.status = std::atoi(response.c_str() + 9);  // "HTTP/1.x NNN"
  reply.headers = response.substr(0, end);
  reply.body = response.substr(end + 4);
  return reply;
}

std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < body.size()) {
    size_t end = body.find("\n\n", at);
    if (end == std::string::npos) end = body.size();
    const std::string event = body.substr(at, end - at);
    if (event.rfind("data: ", 0) == 0) out.push_back(event.substr(6));
    at = end + 2;
  }
  return out;
}

void EngineGate::Hold() {
  std::lock_guard<std::mutex> lock(mu_);
  held_ = true;
}

void EngineGate::Open() {
  std::lock_guard<std::mutex> lock(mu_);
  held_ = false;
  cv_.notify_all();
}

void EngineGate::ReleaseOnce() {
  std::lock_guard<std::mutex> lock(mu_);
  ++releases_;
  cv_.notify_all();
}

void EngineGate::WaitPauses(int n) {
  std::unique_lock<std::mutex> lock(mu_);
  // A bound, not a wait: a pause comes in milliseconds. Without it a server
  // that never started (a failed load) hung the test instead of failing it.
  if (!cv_.wait_for(lock, std::chrono::seconds(60),
                    [&] { return pauses_ >= n; })) {
    ADD_FAILURE() << "the engine paused " << pauses_ << " times in 60 s, not "
                  << n << " (did the server start?)";
  }
}

void EngineGate::OnLayerPart(int layer, LayerPart part, double) {
  if (layer != 0 || part != LayerPart::kAttention) return;
  std::unique_lock<std::mutex> lock(mu_);
  if (!held_) return;
  ++pauses_;
  cv_.notify_all();
  const int ticket = releases_;
  cv_.wait(lock, [&] { return !held_ || releases_ > ticket; });
}

ServerOptions ServerTest::DefaultOptions() const {
  ServerOptions o;
  o.model_path = GetTinyModelFiles().model;
  o.plan_path = GetTinyModelFiles().plan;
  o.host = "127.0.0.1";
  o.grpc_port = 0;
  o.engine.kv_blocks = 512;
  o.engine.threads = 1;
  o.engine.observer = const_cast<EngineGate*>(&gate_);
  return o;
}

void ServerTest::StartServer(const ServerOptions& options, bool load) {
  auto server = SpikeServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  if (load) {
    const absl::Status s = server_->Load();
    ASSERT_TRUE(s.ok()) << s;
  }
  channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                 grpc::InsecureChannelCredentials());
  stub_ = v1::Generation::NewStub(channel_);
  health_ = grpc::health::v1::Health::NewStub(channel_);
}

void ServerTest::TearDown() {
  gate_.Open();
  stub_.reset();
  health_.reset();
  channel_.reset();
  if (server_) server_->Drain(absl::Seconds(5));
  server_.reset();
}

v1::GenerateRequest ServerTest::TokenRequest(std::vector<int32_t> ids,
                                             int max_new_tokens) {
  v1::GenerateRequest r;
  r.mutable_tokens()->mutable_ids()->Add(ids.begin(), ids.end());
  r.mutable_stopping()->set_max_new_tokens(max_new_tokens);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

grpc::Status ServerTest::Generate(const v1::GenerateRequest& request,
                                  v1::GenerateResponse* response,
                                  int deadline_ms) {
  grpc::ClientContext context;
  if (deadline_ms > 0) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(deadline_ms));
  }
  return stub_->Generate(&context, request, response);
}

grpc::Status ServerTest::Stream(const v1::GenerateRequest& request,
                                std::vector<v1::GenerateResponse>* messages) {
  grpc::ClientContext context;
  auto reader = stub_->GenerateStream(&context, request);
  v1::GenerateResponse m;
  while (reader->Read(&m)) messages->push_back(m);
  return reader->Finish();
}

grpc::health::v1::HealthCheckResponse::ServingStatus ServerTest::Health(
    const std::string& service) {
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status s = health_->Check(&context, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp.status();
}

void ServerTest::WaitForWaiting(int n) {
  // Submit counts a request synchronously; the gRPC handler that calls it
  // runs shortly after the client's call starts.
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (server_->engine()->Stats().waiting < n &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // poll
  }
  ASSERT_EQ(server_->engine()->Stats().waiting, n);
}

void ServerTest::WaitForAborts(int n) {
  // OnCancel reaches the server on a gRPC thread some time after the
  // client's TryCancel.
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (server_->engine()->Stats().aborts_pending < n &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // poll
  }
  ASSERT_GE(server_->engine()->Stats().aborts_pending, n);
}

EngineStats ServerTest::IdleStats() {
  EXPECT_TRUE(server_->WaitForNoCalls(absl::Seconds(30)));
  return server_->engine()->Stats();
}

}  // namespace spikeserve::testing
