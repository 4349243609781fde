// /metrics after real traffic: counters equal what the test sent and
// received, per-layer series exist for every layer and site, and the spike
// counter sees a planted spike unless QFeP absorbed it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fixtures/planted_spike.h"
#include "tests/server/server_fixture.h"

namespace spikeserve::testing {
namespace {

using ::testing::HasSubstr;

// "name{labels}" -> value, from the text exposition format.
std::map<std::string, double> ParseScrape(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return out;
}

// Sends `raw` bytes to 127.0.0.1:`port` and returns everything received
// until the server closes the connection or stays silent for `quiet_ms`.
std::string HttpExchange(int port, const std::string& raw,
                         int quiet_ms = 1000) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  timeval tv{quiet_ms / 1000, (quiet_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      send(fd, raw.data(), raw.size(), 0) == ssize_t(raw.size())) {
    char buf[65536];
    for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) {
      response.append(buf, size_t(n));
    }
  }
  close(fd);
  return response;
}

// Occurrences of `what` in `text`.
int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos;
       at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

class MetricsTest : public ServerTest {
 protected:
  ServerOptions MetricsOptions() const {
    ServerOptions o = DefaultOptions();
    o.metrics_bind = "127.0.0.1:0";
    return o;
  }
  std::map<std::string, double> Scrape() {
    const std::string body = HttpGet(server_->metrics()->port(), "/metrics");
    EXPECT_NE(body.find("spikeserve_build_info"), std::string::npos)
        << body.substr(0, 300);
    return ParseScrape(body);
  }
};

TEST_F(MetricsTest, CountersEqualTheTraffic) {
  StartServer(MetricsOptions());
  ASSERT_GT(server_->metrics()->port(), 0);
  // 3 unary requests of 4 prompt tokens and 5 new tokens, one stream of 6,
  // one invalid request, two Tokenize calls.
  for (int i = 0; i < 3; ++i) {
    v1::GenerateResponse r;
    ASSERT_TRUE(
        Generate(TokenRequest({65, 66, 67, int32_t(68 + i)}, 5), &r).ok());
    ASSERT_EQ(r.tokens_size(), 5);
  }
  std::vector<v1::GenerateResponse> msgs;
  ASSERT_TRUE(Stream(TokenRequest({70, 71, 72, 73}, 6), &msgs).ok());
  v1::GenerateRequest bad = TokenRequest({65}, 2);
  bad.mutable_sampling()->set_temperature(-1);
  v1::GenerateResponse r;
  ASSERT_EQ(Generate(bad, &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    v1::TokenizeRequest t;
    t.set_text("abc");
    v1::TokenizeResponse tr;
    ASSERT_TRUE(stub_->Tokenize(&ctx, t, &tr).ok());
  }
  IdleStats();  // every call done server-side
  auto m = Scrape();
  EXPECT_EQ(m["spikeserve_requests_total{code=\"OK\",protocol=\"grpc\",rpc="
              "\"Generate\"}"],
            3);
  EXPECT_EQ(m["spikeserve_requests_total{code=\"OK\",protocol=\"grpc\",rpc="
              "\"GenerateStream\"}"],
            1);
  EXPECT_EQ(m["spikeserve_requests_total{code=\"INVALID_ARGUMENT\",protocol="
              "\"grpc\",rpc="
              "\"Generate\"}"],
            1);
  EXPECT_EQ(m["spikeserve_requests_total{code=\"OK\",protocol=\"grpc\",rpc="
              "\"Tokenize\"}"],
            2);
  EXPECT_EQ(m["spikeserve_generations_total{finish_reason=\"length\"}"], 4);
  EXPECT_EQ(m["spikeserve_generations_total{finish_reason=\"aborted\"}"], 0);
  EXPECT_EQ(m["spikeserve_generations_total{finish_reason=\"error\"}"], 0);
  EXPECT_EQ(m["spikeserve_prompt_tokens_total"], 16);
  EXPECT_EQ(m["spikeserve_generated_tokens_total"], 21);
  EXPECT_EQ(m["spikeserve_time_to_first_token_seconds_count"], 4);
  EXPECT_EQ(m["spikeserve_request_duration_seconds_count"], 4);
  // A gap between every two consecutive tokens of a request: 3x4 + 5.
  EXPECT_EQ(m["spikeserve_inter_token_latency_seconds_count"], 17);
  EXPECT_EQ(m["spikeserve_requests_running"], 0);
  EXPECT_EQ(m["spikeserve_requests_waiting"], 0);
  EXPECT_GT(m["spikeserve_kv_cache_usage_ratio"], 0);  // the QFeP prefix
  EXPECT_GE(m["spikeserve_batch_tokens_count"], 1 + 4 * 5);
  // Per-layer series for every layer and site (and part), recorded.
  for (int l = 0; l < 2; ++l) {
    for (const char* site : {"qkv", "o", "gate_up", "down"}) {
      const std::string labels =
          absl::StrCat("{layer=\"", l, "\",site=\"", site, "\"}");
      EXPECT_GT(m["spikeserve_activation_token_absmax_count" + labels], 0)
          << labels;
      EXPECT_TRUE(m.count("spikeserve_activation_spike_ratio" + labels));
      EXPECT_TRUE(m.count("spikeserve_activation_spike_tokens_total" + labels));
      EXPECT_TRUE(
          m.count("spikeserve_quantization_fallback_tokens_total" + labels));
    }
    for (const char* part : {"attention", "ffn"}) {
      EXPECT_GT(
          m[absl::StrCat("spikeserve_layer_forward_seconds_count{layer=\"", l,
                         "\",part=\"", part, "\"}")],
          0);
    }
  }
  bool build_info = false, plan_info = false;
  for (const auto& [k, v] : m) {
    build_info |= k.rfind("spikeserve_build_info{", 0) == 0 && v == 1 &&
                  k.find(ExpectedInt8Kernel()) != std::string::npos;
    plan_info |= k.rfind("spikeserve_quant_plan_info{", 0) == 0 && v == 1 &&
                 k.find("qfep_tokens=\"3\"") != std::string::npos &&
                 k.find("w4_sites=\"0\"") != std::string::npos &&
                 k.find("norm_rotation=\"false\"") != std::string::npos;
  }
  EXPECT_TRUE(build_info);
  EXPECT_TRUE(plan_info);
}

// Issue 19: the gauges an endpoint picker and the HPA read move with the
// load: one running and three queued requests show as such and hold KV
// blocks; when they finish every gauge returns to idle.
TEST_F(MetricsTest, QueueAndKvGaugesFollowTheLoad) {
  ServerOptions o = MetricsOptions();
  o.engine.max_running = 1;
  StartServer(o);
  IdleStats();
  auto m = Scrape();
  const double idle_kv = m["spikeserve_kv_cache_usage_ratio"];
  EXPECT_EQ(m["spikeserve_requests_waiting"], 0);
  EXPECT_EQ(m["spikeserve_requests_running"], 0);
  gate_.Hold();
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>>> rs;
  for (int i = 0; i < 4; ++i) {
    std::vector<int32_t> prompt(40, 65 + i);
    ctxs.push_back(std::make_unique<grpc::ClientContext>());
    rs.push_back(
        stub_->GenerateStream(ctxs.back().get(), TokenRequest(prompt, 8)));
    if (i == 0) gate_.WaitPauses(1);  // running, held in its first step
  }
  WaitForWaiting(3);
  m = Scrape();
  EXPECT_EQ(m["spikeserve_requests_running"], 1);
  EXPECT_EQ(m["spikeserve_requests_waiting"], 3);
  EXPECT_GT(m["spikeserve_kv_cache_usage_ratio"], idle_kv);
  gate_.Open();
  for (auto& r : rs) {
    v1::GenerateResponse msg;
    while (r->Read(&msg)) {
    }
    EXPECT_TRUE(r->Finish().ok());
  }
  IdleStats();
  m = Scrape();
  EXPECT_EQ(m["spikeserve_requests_running"], 0);
  EXPECT_EQ(m["spikeserve_requests_waiting"], 0);
  EXPECT_DOUBLE_EQ(m["spikeserve_kv_cache_usage_ratio"], idle_kv);
}

// Issue 23 D6: blocks that only the prefix cache holds are evictable: an
// idle server reports them as cached, not as used (the KV-full alert and a
// load balancer read the used ratio).
TEST_F(MetricsTest, KvUsageCountsPinnedBlocksAndCachedSeparately) {
  StartServer(MetricsOptions());
  const double pool = 512, prefix_blocks = 1;
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    std::vector<int32_t> prompt(100);
    for (size_t i = 0; i < prompt.size(); ++i) {
      prompt[i] = int32_t(32 + (seed * 31 + i * 7) % 90);
    }
    v1::GenerateResponse r;
    ASSERT_TRUE(Generate(TokenRequest(prompt, 2), &r).ok());
  }
  const EngineStats idle = IdleStats();
  ASSERT_EQ(idle.kv_blocks_cached, 3 * 6);  // 6 full blocks per prompt
  auto m = Scrape();
  EXPECT_DOUBLE_EQ(m["spikeserve_kv_cache_usage_ratio"], prefix_blocks / pool);
  EXPECT_DOUBLE_EQ(m["spikeserve_kv_cache_cached_ratio"], 18 / pool);
  // A request in flight pins its blocks: used again.
  gate_.Hold();
  grpc::ClientContext ctx;
  auto reader = stub_->GenerateStream(&ctx, TokenRequest({65, 66, 67}, 50));
  gate_.WaitPauses(1);
  m = Scrape();
  EXPECT_GT(m["spikeserve_kv_cache_usage_ratio"], prefix_blocks / pool);
  ctx.TryCancel();
  gate_.Open();
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
  }
  reader->Finish();
}

// Issue 23 D5: a stream the client cancelled and calls past their deadline
// are counted with the code the client saw, not as OK.
TEST_F(MetricsTest, CancelledAndDeadlineCallsAreCountedWithTheirCode) {
  StartServer(MetricsOptions());
  {
    gate_.Hold();
    grpc::ClientContext ctx;
    auto reader = stub_->GenerateStream(&ctx, TokenRequest({65, 66, 67}, 50));
    gate_.WaitPauses(1);
    ctx.TryCancel();
    // The engine runs on only once the server has seen the cancellation
    // (else it could finish the 50 tokens first, and the call is then OK).
    WaitForAborts(1);
    gate_.Open();
    v1::GenerateResponse m;
    while (reader->Read(&m)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  {
    // The engine is held while the deadlines pass. The client's deadline
    // passes a transit time before the server's, so its cancellation may
    // arrive first; the server counts one in the last quarter of the
    // timeout as the deadline (this failed CI under ASan with 100 ms).
    gate_.Hold();
    v1::GenerateResponse r;
    EXPECT_EQ(Generate(TokenRequest({65, 66, 67}, 50), &r, 400).error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(400));
    auto reader = stub_->GenerateStream(&ctx, TokenRequest({65, 66, 67}, 50));
    v1::GenerateResponse m;
    while (reader->Read(&m)) {
    }
    EXPECT_EQ(reader->Finish().error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
    gate_.Open();
  }
  IdleStats();  // every call done server-side
  auto m = Scrape();
  EXPECT_EQ(
      m["spikeserve_requests_total{code=\"CANCELLED\",protocol=\"grpc\",rpc="
        "\"GenerateStream\"}"],
      1);
  EXPECT_EQ(m["spikeserve_requests_total{code=\"DEADLINE_EXCEEDED\",protocol="
              "\"grpc\",rpc="
              "\"Generate\"}"],
            1);
  EXPECT_EQ(m["spikeserve_requests_total{code=\"DEADLINE_EXCEEDED\",protocol="
              "\"grpc\",rpc="
              "\"GenerateStream\"}"],
            1);
  EXPECT_EQ(m["spikeserve_requests_total{code=\"OK\",protocol=\"grpc\",rpc="
              "\"Generate\"}"],
            0);
  EXPECT_EQ(m["spikeserve_requests_total{code=\"OK\",protocol=\"grpc\",rpc="
              "\"GenerateStream\"}"],
            0);
  // The engine ended all three early: cancelled, or past the deadline.
  EXPECT_EQ(m["spikeserve_generations_total{finish_reason=\"aborted\"}"] +
                m["spikeserve_generations_total{finish_reason=\"deadline\"}"],
            3);
  EXPECT_EQ(m["spikeserve_generations_total{finish_reason=\"length\"}"], 0);
}

// Issue 23 D15: /metrics speaks HTTP/1.1 to every client: HEAD answers
// like GET without the body, other methods get 405 with Allow, OPTIONS
// (/metrics and *) 204 with Allow, an Upgrade request gets a status line,
// pipelined requests each get an answer.
TEST_F(MetricsTest, MetricsEndpointAnswersEveryMethodAndPipelinedRequests) {
  StartServer(MetricsOptions());
  const int port = server_->metrics()->port();
  const std::string close = "Host: 127.0.0.1\r\nConnection: close\r\n\r\n";
  std::string r = HttpExchange(port, "HEAD /metrics HTTP/1.1\r\n" + close);
  EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(r, HasSubstr("Content-Type: text/plain"));
  EXPECT_THAT(r, HasSubstr("Content-Length: "));
  EXPECT_EQ(r.substr(r.find("\r\n\r\n") + 4), "");  // no body
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH"}) {
    r = HttpExchange(port, absl::StrCat(method, " /metrics HTTP/1.1\r\n",
                                        "Content-Length: 0\r\n", close));
    EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 405")) << method << r;
    EXPECT_THAT(r, HasSubstr("Allow: GET, HEAD")) << method;
  }
  for (const char* target : {"/metrics", "*"}) {
    r = HttpExchange(port,
                     absl::StrCat("OPTIONS ", target, " HTTP/1.1\r\n", close));
    EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 204")) << target << r;
    EXPECT_THAT(r, HasSubstr("Allow: GET, HEAD")) << target << r;
  }
  r = HttpExchange(port,
                   "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
  EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 200 OK\r\n"))
      << r.substr(0, 200);
  // Three pipelined keep-alive GETs, the last one closing: three answers.
  const std::string get = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  r = HttpExchange(
      port, get + "\r\n" + get + "\r\n" + get + "Connection: close\r\n\r\n");
  EXPECT_EQ(Count(r, "HTTP/1.1 200 OK\r\n"), 3) << r.substr(0, 300);
  EXPECT_EQ(Count(r, "# TYPE spikeserve_build_info gauge"), 3);
  // Other paths: 404.
  r = HttpExchange(port, "GET /other HTTP/1.1\r\n" + close);
  EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 404")) << r;
  // Refused requests that carry a body are answered too (the body is read
  // and dropped), and so is a keep-alive GET pipelined after one.
  r = HttpExchange(port, "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n" +
                             std::string("Host: 127.0.0.1\r\n\r\nhello") + get +
                             "Connection: close\r\n\r\n");
  EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 405")) << r;
  EXPECT_EQ(Count(r, "HTTP/1.1 200 OK\r\n"), 1) << r.substr(0, 300);
  r = HttpExchange(
      port, "PUT /other HTTP/1.1\r\nContent-Length: 3\r\n" + close + "abc");
  EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 404")) << r;
}

TEST_F(MetricsTest, LayerSeriesCanBeSwitchedOff) {
  ServerOptions o = MetricsOptions();
  o.layer_metrics_every = 0;
  StartServer(o);
  v1::GenerateResponse r;
  ASSERT_TRUE(Generate(TokenRequest({65, 66}, 4), &r).ok());
  auto m = Scrape();
  EXPECT_EQ(
      m["spikeserve_activation_token_absmax_count{layer=\"0\",site=\"qkv\"}"],
      0);
  EXPECT_EQ(
      m["spikeserve_layer_forward_seconds_count{layer=\"1\",part=\"ffn\"}"], 0);
  EXPECT_GE(m["spikeserve_batch_tokens_count"], 4);  // still counted
}

TEST_F(MetricsTest, SampledEveryNthStep) {
  ServerOptions o = MetricsOptions();
  o.layer_metrics_every = 4;
  StartServer(o);
  v1::GenerateResponse r;
  ASSERT_TRUE(Generate(TokenRequest({65, 66}, 16), &r).ok());  // 16 steps
  auto m = Scrape();
  const double steps = m["spikeserve_batch_tokens_count"];
  const double sampled =
      m["spikeserve_layer_forward_seconds_count{layer=\"0\",part=\"ffn\"}"];
  // Steps 0, 4, 8, ... of the engine (the warm-up's 2 steps included); a
  // missing series would read 0 on both sides.
  EXPECT_GE(steps, 16);
  EXPECT_EQ(sampled, std::ceil(steps / 4));
}

TEST_F(MetricsTest, TakenMetricsPortFailsClearly) {
  StartServer(MetricsOptions(), /*load=*/false);
  ServerOptions o = MetricsOptions();
  o.metrics_bind = absl::StrCat("127.0.0.1:", server_->metrics()->port());
  auto second = SpikeServer::Start(o);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr("cannot serve metrics"));
}

// Acceptance 4: the planted spike (first occurrence of token T at layer 1's
// down_proj input) counts as a spike token without QFeP; with the QFeP
// prefix [BOS, c, T] holding it, the same prompt does not spike.
TEST_F(MetricsTest, SpikeCounterSeesThePlantedSpikeUnlessQfepHoldsIt) {
  const std::string gguf = PlantedSpikeGguf();
  const std::vector<int32_t> prompt = {65, 66, kSpikeToken, 67, 68, 69};
  const std::string series =
      "spikeserve_activation_spike_tokens_total{layer=\"1\",site=\"down\"}";
  for (bool qfep : {false, true}) {
    const TinyModelFiles files =
        WriteModelAndPlan(gguf, qfep ? "planted-qfep" : "planted",
                          qfep ? std::vector<int32_t>{298, 40, kSpikeToken}
                               : std::vector<int32_t>{});
    ServerOptions o = MetricsOptions();
    o.model_path = files.model;
    o.plan_path = files.plan;
    StartServer(o);
    const double before = Scrape()[series];
    v1::GenerateResponse r;
    ASSERT_TRUE(Generate(TokenRequest(prompt, 2), &r).ok());
    const double after = Scrape()[series];
    if (qfep) {
      EXPECT_EQ(after, before) << "QFeP on: the prefix holds the spike";
    } else {
      EXPECT_EQ(after, before + 1) << "QFeP off: T's first occurrence spikes";
    }
    TearDown();
  }
}

}  // namespace
}  // namespace spikeserve::testing
