// The OpenAI-compatible HTTP API against an in-process server on the tiny
// model (with a chat template): answers, streams, errors, draining and
// cancellation. The official `openai` client is tests/python/openai_test.py.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/fixtures/gguf_builder.h"
#include "tests/server/server_fixture.h"

namespace spikeserve::testing {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kChat[] = "/v1/chat/completions";
constexpr char kTemplate[] =
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}<|eos|>{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}";

class OpenAiHttpTest : public ServerTest {
 protected:
  // Polls (bounded) until n requests are running or waiting in the engine.
  void WaitInEngine(int n) {
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < until) {
      const EngineStats st = server_->engine()->Stats();
      if (st.running + st.waiting == n) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // poll
    }
    ADD_FAILURE() << "never " << n << " requests in the engine";
  }
  // Once idle: the KV blocks back to `idle` (full prompt blocks stay in
  // the prefix cache) and n chat calls counted as cancelled. IdleStats
  // waits for gRPC calls only: the engine publishes an HTTP call's freed
  // blocks when it leaves the batch, and the call counts itself in the
  // final update that follows, so both are waited for (bounded).
  void ExpectCancelledAndIdle(int n, int idle) {
    WaitInEngine(0);
    const EngineStats after = IdleStats();
    EXPECT_EQ(after.kv_blocks_used - after.kv_blocks_cached, idle);
    const std::string cancelled = absl::StrCat(
        "spikeserve_requests_total{code=\"CANCELLED\",protocol="
        "\"http\",rpc=\"/v1/chat/completions\"} ",
        n, "\n");
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < until &&
           !absl::StrContains(server_->metrics()->Serialize(), cancelled)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // poll
    }
    EXPECT_THAT(server_->metrics()->Serialize(), HasSubstr(cancelled));
  }
  ServerOptions HttpOptions() const {
    static const TinyModelFiles files =
        WriteModelAndPlan(TinyLlama({.chat_template = kTemplate}).Build(),
                          "openai-model", GetTinyModelFiles().prefix);
    ServerOptions o = DefaultOptions();
    o.model_path = files.model;
    o.plan_path = files.plan;
    o.http_bind = "127.0.0.1:0";
    o.served_model_name = "tiny";
    return o;
  }
  HttpReply Post(const std::string& path, const Json& body,
                 const std::string& headers = "") {
    return HttpRequest(server_->http_port(), "POST", path, body.dump(),
                       headers);
  }
  static Json ChatBody(int max_tokens, bool stream = false) {
    return Json{{"model", "tiny"},
                {"messages", {{{"role", "user"}, {"content", "hello"}}}},
                {"max_tokens", max_tokens},
                {"temperature", 0},
                {"ignore_eos", true},
                {"stream", stream}};
  }
  // The text of a stream's chunks; checks its shape on the way.
  static std::string StreamText(const HttpReply& r, Json* usage = nullptr) {
    std::vector<std::string> data = SseData(r.body);
    EXPECT_GE(data.size(), 3u) << r.body;
    if (data.empty()) return "";
    EXPECT_EQ(data.back(), "[DONE]");
    std::string text;
    for (size_t i = 0; i + 1 < data.size(); ++i) {
      const Json j = Json::parse(data[i]);
      if (j["choices"].empty()) {  // the usage chunk
        if (usage != nullptr) *usage = j["usage"];
        continue;
      }
      const Json& c = j["choices"][0];
      if (c.contains("delta") && c["delta"].contains("content")) {
        text += c["delta"]["content"].get<std::string>();
      }
      if (c.contains("text")) text += c["text"].get<std::string>();
    }
    return text;
  }
};

TEST_F(OpenAiHttpTest, StreamedEqualsUnaryAndTheGrpcChat) {
  StartServer(HttpOptions());
  const HttpReply unary = Post(kChat, ChatBody(12));
  ASSERT_EQ(unary.status, 200) << unary.body;
  const Json u = Json::parse(unary.body);
  EXPECT_EQ(u["object"], "chat.completion");
  EXPECT_EQ(u["model"], "tiny");
  EXPECT_EQ(u["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(u["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(u["usage"]["completion_tokens"], 12);
  const std::string text = u["choices"][0]["message"]["content"];

  Json body = ChatBody(12, /*stream=*/true);
  body["stream_options"] = {{"include_usage", true}};
  const HttpReply streamed = Post(kChat, body);
  ASSERT_EQ(streamed.status, 200);
  EXPECT_THAT(streamed.headers, HasSubstr("text/event-stream"));
  Json usage;
  EXPECT_EQ(StreamText(streamed, &usage), text);
  EXPECT_EQ(usage["completion_tokens"], 12);
  EXPECT_EQ(usage["prompt_tokens"], u["usage"]["prompt_tokens"]);

  // The gRPC chat with the same messages gives the same text.
  v1::GenerateRequest chat = TokenRequest({}, 12);
  v1::ChatMessage* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("hello");
  v1::GenerateResponse g;
  ASSERT_TRUE(Generate(chat, &g).ok());
  EXPECT_EQ(g.text(), text);

  // Completions: a token-id prompt, unary and streamed.
  const Json cbody = {{"prompt", {65, 66, 67}},
                      {"max_tokens", 7},
                      {"temperature", 0},
                      {"ignore_eos", true},
                      {"logprobs", 2}};
  const HttpReply c = Post("/v1/completions", cbody);
  ASSERT_EQ(c.status, 200) << c.body;
  const Json cj = Json::parse(c.body);
  EXPECT_EQ(cj["object"], "text_completion");
  EXPECT_EQ(cj["choices"][0]["logprobs"]["tokens"].size(), 7u);
  EXPECT_EQ(cj["choices"][0]["logprobs"]["top_logprobs"][0].size(), 2u);
  Json cs = cbody;
  cs["stream"] = true;
  EXPECT_EQ(StreamText(Post("/v1/completions", cs)),
            cj["choices"][0]["text"].get<std::string>());

  // Both protocols are counted, apart.
  IdleStats();
  const std::string metrics = server_->metrics()->Serialize();
  EXPECT_THAT(metrics,
              HasSubstr("spikeserve_requests_total{code=\"OK\",protocol="
                        "\"http\",rpc=\"/v1/chat/completions\"} 2"));
  EXPECT_THAT(metrics,
              HasSubstr("spikeserve_requests_total{code=\"OK\",protocol="
                        "\"grpc\",rpc=\"Generate\"} 1"));
}

// What common clients send beyond the basics: models.retrieve, the
// "developer" role (the system prompt of OpenAI's newer models) and vLLM's
// sampling fields.
TEST_F(OpenAiHttpTest, RetrievalDeveloperRoleAndVllmSampling) {
  StartServer(HttpOptions());
  const HttpReply model =
      HttpRequest(server_->http_port(), "GET", "/v1/models/tiny");
  ASSERT_EQ(model.status, 200) << model.body;
  const Json mj = Json::parse(model.body);
  EXPECT_EQ(mj["id"], "tiny");
  EXPECT_EQ(mj["object"], "model");

  auto answer = [&](const Json& body) {
    const HttpReply r = Post(kChat, body);
    EXPECT_EQ(r.status, 200) << r.body;
    return Json::parse(r.body, nullptr, false);
  };
  auto with_first = [](const char* role) {
    Json b = ChatBody(12);
    b["messages"] = Json::array({{{"role", role}, {"content", "be brief"}},
                                 {{"role", "user"}, {"content", "hello"}}});
    return b;
  };
  const Json system = answer(with_first("system"));
  const Json developer = answer(with_first("developer"));
  EXPECT_EQ(developer["choices"][0]["message"]["content"],
            system["choices"][0]["message"]["content"]);
  EXPECT_EQ(developer["usage"]["prompt_tokens"],
            system["usage"]["prompt_tokens"]);

  // logit_bias reaches the sampler: +100 on token 66 makes every greedy
  // token 66, which the unbiased answer is not.
  Json plain = {{"prompt", {65, 66, 67}},
                {"max_tokens", 4},
                {"temperature", 0},
                {"ignore_eos", true},
                {"logprobs", 0}};
  Json biased = plain;
  biased["logit_bias"] = {{"66", 100}};
  const HttpReply pr = Post("/v1/completions", plain);
  const HttpReply br = Post("/v1/completions", biased);
  ASSERT_EQ(pr.status, 200) << pr.body;
  ASSERT_EQ(br.status, 200) << br.body;
  const Json bt = Json::parse(br.body)["choices"][0]["logprobs"]["tokens"];
  const Json pt = Json::parse(pr.body)["choices"][0]["logprobs"]["tokens"];
  ASSERT_EQ(bt.size(), 4u);
  for (const Json& t : bt) EXPECT_EQ(t, bt[0]);
  EXPECT_NE(pt, bt);

  // vLLM's top_k reaches the shared validation, which knows the vocabulary
  // (the mapping of each field: openai_protocol_test).
  Json big_k = ChatBody(2);
  big_k["top_k"] = 1000000;
  const HttpReply r = Post(kChat, big_k);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_THAT(r.body, HasSubstr("exceeds the vocabulary"));
}

struct BadCase {
  const char* name;
  std::string method, path, body, headers;
  int status;
  const char* type;
  const char* message;
};

// Acceptance 3: each bad request gets its status and an OpenAI-shaped
// error, and the server answers the next good request.
TEST_F(OpenAiHttpTest, BadRequestsGetTheirStatusAndTheServerKeepsServing) {
  ServerOptions o = HttpOptions();
  o.auth_token = "s3cret";
  StartServer(o);
  const std::string auth = "Authorization: Bearer s3cret\r\n";
  const std::string ok_body = ChatBody(2).dump();
  auto with = [&](const char* key, Json value) {
    Json b = ChatBody(2);
    b[key] = std::move(value);
    return b.dump();
  };
  const BadCase cases[] = {
      {"malformed JSON", "POST", kChat, "{\"messages\": [", auth, 400,
       "invalid_request_error", "not valid JSON"},
      {"not an object", "POST", kChat, "[1, 2]", auth, 400,
       "invalid_request_error", "must be a JSON object"},
      {"missing messages", "POST", kChat, "{\"max_tokens\": 3}", auth, 400,
       "invalid_request_error", "'messages' is required"},
      {"messages not a list", "POST", kChat, with("messages", "hi"), auth, 400,
       "invalid_request_error", "'messages' must be a non-empty array"},
      {"temperature a string", "POST", kChat, with("temperature", "hot"), auth,
       400, "invalid_request_error", "'temperature' must be a number"},
      {"temperature out of range", "POST", kChat, with("temperature", 3), auth,
       400, "invalid_request_error", "is outside [0, 2]"},
      {"max_tokens fractional", "POST", kChat, with("max_tokens", 2.5), auth,
       400, "invalid_request_error", "'max_tokens' must be an integer"},
      {"max_tokens beyond the context", "POST", kChat,
       with("max_tokens", 100000), auth, 400, "invalid_request_error",
       "exceeds the context"},
      {"n of 2", "POST", kChat, with("n", 2), auth, 400,
       "invalid_request_error", "'n' must be 1"},
      {"stop a number", "POST", kChat, with("stop", 5), auth, 400,
       "invalid_request_error", "'stop' must be a string or an array"},
      {"unknown role", "POST", kChat,
       with("messages", Json::array({{{"role", "robot"}, {"content", "x"}}})),
       auth, 400, "invalid_request_error", "is not one of system"},
      {"image content", "POST", kChat,
       with("messages",
            Json::array(
                {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}})),
       auth, 400, "invalid_request_error", "only text is supported"},
      {"tools an object", "POST", kChat, with("tools", Json::object()), auth,
       400, "invalid_request_error", "'tools' must be an array"},
      {"JSON mode", "POST", kChat,
       with("response_format", {{"type", "json_object"}}), auth, 400,
       "invalid_request_error", "no constrained decoding"},
      {"forced tool call", "POST", kChat, with("tool_choice", "required"), auth,
       400, "invalid_request_error", "forcing a tool call"},
      {"unknown model", "POST", kChat, with("model", "gpt-4"), auth, 404,
       "not_found_error", "the model 'gpt-4' does not exist"},
      {"unknown model retrieved", "GET", "/v1/models/gpt-4", "", auth, 404,
       "not_found_error", "the model 'gpt-4' does not exist"},
      // A million nested arrays in 2 MB: read back recursively, they would
      // overflow the HTTP thread's stack and end the server.
      {"tools nested a million deep", "POST", kChat,
       absl::StrCat(R"({"messages": [{"role": "user", "content": "x"}], )",
                    R"("tools": )", std::string(1000000, '['),
                    std::string(1000000, ']'), "}"),
       auth, 400, "invalid_request_error",
       "nests arrays and objects deeper than 64 levels"},
      {"stream_options without a stream", "POST", kChat,
       with("stream_options", {{"include_usage", true}}), auth, 400,
       "invalid_request_error", "only allowed with 'stream': true"},
      {"logit_bias keyed by text", "POST", kChat,
       with("logit_bias", {{"yes", 10}}), auth, 400, "invalid_request_error",
       "'logit_bias' keys must be token ids, not 'yes'"},
      {"logit_bias beyond the vocabulary", "POST", kChat,
       with("logit_bias", {{"99999999", 10}}), auth, 400,
       "invalid_request_error", "is outside the vocabulary"},
      {"logit_bias of 150", "POST", kChat, with("logit_bias", {{"66", 150}}),
       auth, 400, "invalid_request_error", "[-100, 100]"},
      {"top_k a string", "POST", kChat, with("top_k", "5"), auth, 400,
       "invalid_request_error", "'top_k' must be an integer"},
      {"min_p of 1", "POST", kChat, with("min_p", 1), auth, 400,
       "invalid_request_error", "'min_p' must be below 1"},
      {"stop_token_ids of text", "POST", kChat, with("stop_token_ids", {"eos"}),
       auth, 400, "invalid_request_error",
       "'stop_token_ids' must be an array of token ids"},
      {"10 MB body", "POST", kChat, std::string(10 << 20, ' '), auth, 413,
       "invalid_request_error", "larger than"},
      {"unknown path", "GET", "/v1/embeddings", "", auth, 404,
       "not_found_error", "no such route"},
      {"wrong method", "GET", kChat, "", auth, 405, "invalid_request_error",
       "use POST"},
      {"missing token", "POST", kChat, ok_body, "", 401, "authentication_error",
       "missing bearer token"},
      {"wrong token", "POST", kChat, ok_body, "Authorization: Bearer guess\r\n",
       401, "authentication_error", "invalid token"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    const HttpReply r =
        HttpRequest(server_->http_port(), c.method, c.path, c.body, c.headers);
    EXPECT_EQ(r.status, c.status) << r.body;
    const Json j = Json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
    EXPECT_EQ(j["error"]["type"], c.type);
    EXPECT_THAT(j["error"]["message"].get<std::string>(), HasSubstr(c.message));
    const HttpReply good =
        HttpRequest(server_->http_port(), "POST", kChat, ok_body, auth);
    EXPECT_EQ(good.status, 200) << good.body;
  }
  // /health needs no token (probes carry none).
  EXPECT_EQ(HttpRequest(server_->http_port(), "GET", "/health").status, 200);
  // None of these is a full queue: the "requests refused" alert counts
  // RESOURCE_EXHAUSTED (a 413 counted as one).
  EXPECT_THAT(server_->metrics()->Serialize(),
              Not(HasSubstr("code=\"RESOURCE_EXHAUSTED\"")));

  // Without the token a body is not waited for (nor buffered): the 401
  // comes as soon as the headers are in.
  const int fd = ConnectLocal(server_->http_port());
  ASSERT_GE(fd, 0);
  const std::string head =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
      "Content-Length: 3000000\r\n\r\n";
  send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  timeval tv{30, 0};  // a bound, not a wait
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[512];
  const ssize_t n = recv(fd, buf, sizeof(buf), 0);
  close(fd);
  ASSERT_GT(n, 0);
  EXPECT_THAT(std::string(buf, size_t(n)), HasSubstr(" 401 "));
}

// A full queue is 429 at once; loading and draining are 503 (health too),
// and a drain lets the streams in flight finish.
TEST_F(OpenAiHttpTest, QueueFullLoadingAndDraining) {
  ServerOptions o = HttpOptions();
  o.engine.max_running = 1;
  o.engine.max_waiting = 1;
  StartServer(o, /*load=*/false);
  EXPECT_EQ(HttpRequest(server_->http_port(), "GET", "/health").status, 503);
  EXPECT_EQ(Post(kChat, ChatBody(2)).status, 503);
  ASSERT_TRUE(server_->Load().ok());
  EXPECT_EQ(HttpRequest(server_->http_port(), "GET", "/health").status, 200);
  const Json models =
      Json::parse(HttpRequest(server_->http_port(), "GET", "/v1/models").body);
  EXPECT_EQ(models["data"][0]["id"], "tiny");

  gate_.Hold();
  HttpReply first, second;
  std::thread a([&] { first = Post(kChat, ChatBody(20, true)); });
  gate_.WaitPauses(1);  // running, held inside its first step
  std::thread b([&] { second = Post(kChat, ChatBody(20, true)); });
  WaitForWaiting(1);
  const HttpReply full = Post(kChat, ChatBody(2));
  EXPECT_EQ(full.status, 429) << full.body;
  // openai-python and other clients wait this long before retrying.
  EXPECT_THAT(full.headers, HasSubstr("Retry-After: 1\r\n"));
  EXPECT_THAT(full.body, HasSubstr("rate_limit_error"));

  std::atomic<int> aborted{-1};
  std::thread drain([&] { aborted = server_->Drain(absl::Seconds(30)); });
  // Draining: health and new requests are 503 while the two streams wait.
  for (int i = 0; i < 1000; ++i) {
    if (HttpRequest(server_->http_port(), "GET", "/health").status == 503) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(HttpRequest(server_->http_port(), "GET", "/health").status, 503);
  const HttpReply refused = Post(kChat, ChatBody(2));
  EXPECT_EQ(refused.status, 503);
  EXPECT_THAT(refused.headers, HasSubstr("Retry-After: 1\r\n"));
  EXPECT_THAT(refused.body, HasSubstr("draining"));
  gate_.Open();
  a.join();
  b.join();
  drain.join();
  EXPECT_EQ(aborted.load(), 0);
  for (const HttpReply* r : {&first, &second}) {
    EXPECT_EQ(r->status, 200);
    std::vector<std::string> data = SseData(r->body);
    ASSERT_FALSE(data.empty());
    EXPECT_EQ(data.back(), "[DONE]");
    EXPECT_THAT(data[data.size() - 2],
                HasSubstr("\"finish_reason\":\"length\""));
  }
}

// Sends a streamed chat on a raw socket (the answer is left unread).
int OpenStream(int port, const std::string& body) {
  const int fd = ConnectLocal(port);
  if (fd < 0) return -1;
  const std::string req = absl::StrCat(
      "POST /v1/chat/completions HTTP/1.0\r\nContent-Length: ", body.size(),
      "\r\n\r\n", body);
  send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  return fd;
}

// A client that closes behind bytes the server has not read (with TLS its
// close_notify; here a TLS alert's bytes in plain text, sent while the
// connection waits for its answer) has its request aborted, not run to
// max_tokens.
TEST_F(OpenAiHttpTest, ClosingBehindUnreadBytesAbortsUnaryRequests) {
  StartServer(HttpOptions());
  const int idle = IdleStats().kv_blocks_used;
  std::vector<int> fds;
  gate_.Hold();
  for (int i = 0; i < 4; ++i) {
    Json body = ChatBody(60);
    body["messages"][0]["content"] = absl::StrCat("unary ", i);
    fds.push_back(OpenStream(server_->http_port(), body.dump()));
    ASSERT_GE(fds.back(), 0);
  }
  gate_.WaitPauses(1);
  WaitInEngine(4);
  const char alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00};
  for (int fd : fds) {
    send(fd, alert, sizeof(alert), MSG_NOSIGNAL);
    close(fd);
  }
  gate_.Open();
  ExpectCancelledAndIdle(4, idle);
}

// While a prompt is prefilled (held here) no token comes: a stream gets
// SSE comments so that proxies do not time it out, and its answer is
// whole after them.
TEST_F(OpenAiHttpTest, StreamsGetKeepAlivesWhileThePromptIsPrefilled) {
  ServerOptions o = HttpOptions();
  o.http_stream_keepalive = absl::Milliseconds(50);
  StartServer(o);
  gate_.Hold();
  const int fd = OpenStream(server_->http_port(), ChatBody(6, true).dump());
  ASSERT_GE(fd, 0);
  gate_.WaitPauses(1);
  timeval tv{30, 0};  // a bound, not a wait: the comment comes in ~0.3 s
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string got;
  char buf[4096];
  while (got.find(": keep-alive\n\n") == std::string::npos) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    ASSERT_GT(n, 0) << got;
    got.append(buf, size_t(n));
  }
  EXPECT_EQ(got.find("data: "), std::string::npos);  // no token yet
  gate_.Open();
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) {
    got.append(buf, size_t(n));
  }
  close(fd);
  const size_t body = got.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos);
  HttpReply r;
  r.body = got.substr(body + 4);
  Json usage;
  EXPECT_FALSE(StreamText(r, &usage).empty());
  EXPECT_THAT(r.body, HasSubstr("\"finish_reason\":\"length\""));
}

// A client gone while its prompt is prefilled is aborted then (the
// watcher sees the closed socket), not at its first token.
TEST_F(OpenAiHttpTest, ClientsGoneDuringThePrefillAreAbortedThen) {
  StartServer(HttpOptions());
  const int idle = IdleStats().kv_blocks_used;
  gate_.Hold();
  const int unary = OpenStream(server_->http_port(), ChatBody(60).dump());
  const int stream =
      OpenStream(server_->http_port(), ChatBody(60, true).dump());
  ASSERT_GE(unary, 0);
  ASSERT_GE(stream, 0);
  gate_.WaitPauses(1);  // the engine is inside its first step
  WaitInEngine(2);
  close(unary);
  close(stream);
  // Both aborts reach the engine while it is still held in that step.
  int pending = 0;
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < until) {
    pending = server_->engine()->Stats().aborts_pending;
    if (pending == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // poll
  }
  EXPECT_EQ(pending, 2);
  gate_.Open();
  ExpectCancelledAndIdle(2, idle);
}

// Acceptance 4 (second half): 16 streams; half of the clients go away
// mid-stream; the rest finish and the KV cache returns to idle.
TEST_F(OpenAiHttpTest, ClosingHalfOfSixteenStreamsFreesTheirKv) {
  StartServer(HttpOptions());
  const int idle = IdleStats().kv_blocks_used;
  std::vector<int> fds;
  gate_.Hold();  // all 16 are in the engine before any finishes
  for (int i = 0; i < 16; ++i) {
    Json body = ChatBody(60, true);
    body["messages"][0]["content"] = absl::StrCat("stream ", i);
    fds.push_back(OpenStream(server_->http_port(), body.dump()));
    ASSERT_GE(fds.back(), 0);
  }
  gate_.WaitPauses(1);  // the first step, holding some of them
  // The rest arrive in the queue (or were already in the first batch).
  WaitInEngine(16);
  ASSERT_EQ(
      server_->engine()->Stats().running + server_->engine()->Stats().waiting,
      16);
  EXPECT_GT(server_->engine()->Stats().kv_blocks_used, idle);
  for (int i = 0; i < 16; i += 2) close(fds[i]);
  gate_.Open();
  for (int i = 1; i < 16; i += 2) {
    std::string rest;
    char buf[65536];
    for (ssize_t n; (n = recv(fds[i], buf, sizeof(buf), 0)) > 0;) {
      rest.append(buf, size_t(n));
    }
    close(fds[i]);
    EXPECT_THAT(rest, HasSubstr("data: [DONE]"));
    EXPECT_THAT(rest, HasSubstr("\"finish_reason\":\"length\""));
  }
  ExpectCancelledAndIdle(8, idle);
}

}  // namespace
}  // namespace spikeserve::testing
