// The OpenAI JSON front end's request parsing, without a server: what
// common clients send becomes the gRPC request the engine is given.
#include "server/http/openai_protocol.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace spikeserve {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

Json Chat() {
  return Json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}};
}

absl::StatusOr<OpenAiRequest> Parse(const Json& body, OpenAiError* e) {
  return ParseOpenAiRequest(OpenAiEndpoint::kChat, body.dump(), e);
}

TEST(OpenAiProtocol, DeveloperMessagesAreSystemMessages) {
  Json b = Chat();
  b["messages"].insert(b["messages"].begin(),
                       Json{{"role", "developer"}, {"content", "be brief"}});
  OpenAiError e;
  absl::StatusOr<OpenAiRequest> r = Parse(b, &e);
  ASSERT_TRUE(r.ok()) << e.message;
  ASSERT_EQ(r->request.chat().messages_size(), 2);
  EXPECT_EQ(r->request.chat().messages(0).role(), "system");
  EXPECT_EQ(r->request.chat().messages(1).role(), "user");
}

// OpenAI's tool calls carry their arguments as a JSON string; templates
// read them as an object.
TEST(OpenAiProtocol, ToolCallArgumentsReachTheTemplateAsObjects) {
  Json b = Chat();
  b["messages"].push_back(
      {{"role", "assistant"},
       {"content", nullptr},
       {"tool_calls",
        {{{"id", "call_1"},
          {"type", "function"},
          {"function",
           {{"name", "get_weather"},
            {"arguments", R"({"city": "Oslo", "days": 2})"}}}},
         {{"id", "call_2"},
          {"type", "function"},
          {"function", {{"name", "noop"}, {"arguments", "not json"}}}}}}});
  OpenAiError e;
  absl::StatusOr<OpenAiRequest> r = Parse(b, &e);
  ASSERT_TRUE(r.ok()) << e.message;
  const Json calls =
      Json::parse(r->request.chat().messages(1).tool_calls_json());
  EXPECT_EQ(calls[0]["function"]["arguments"],
            (Json{{"city", "Oslo"}, {"days", 2}}));
  EXPECT_EQ(calls[0]["id"], "call_1");
  EXPECT_EQ(calls[1]["function"]["arguments"], "not json");  // as sent
}

TEST(OpenAiProtocol, VllmSamplingFieldsReachTheRequest) {
  Json b = Chat();
  b["top_k"] = 40;
  b["min_p"] = 0.05;
  b["repetition_penalty"] = 1.1;
  b["stop_token_ids"] = {7, 9};
  b["logit_bias"] = {{"5", -100}, {"12", 2.5}};
  OpenAiError e;
  absl::StatusOr<OpenAiRequest> r = Parse(b, &e);
  ASSERT_TRUE(r.ok()) << e.message;
  EXPECT_EQ(r->request.sampling().top_k(), 40);
  EXPECT_FLOAT_EQ(r->request.sampling().min_p(), 0.05f);
  EXPECT_FLOAT_EQ(r->request.sampling().repetition_penalty(), 1.1f);
  EXPECT_THAT(r->request.stopping().stop_token_ids(),
              ::testing::ElementsAre(7, 9));
  const auto& bias = r->request.sampling().logit_bias();
  ASSERT_EQ(bias.size(), 2u);
  EXPECT_FLOAT_EQ(bias.at(5), -100.0f);
  EXPECT_FLOAT_EQ(bias.at(12), 2.5f);
  b["top_k"] = -1;  // vLLM's "off"
  r = Parse(b, &e);
  ASSERT_TRUE(r.ok()) << e.message;
  EXPECT_EQ(r->request.sampling().top_k(), 0);
}

// n levels of arrays: "[[...]]".
std::string Nested(int n) {
  return std::string(size_t(n), '[') + std::string(size_t(n), ']');
}

TEST(OpenAiProtocol, NestingIsBoundedAt64Levels) {
  // The body is one level, "tools" the next: 63 levels of tools fit.
  const std::string head =
      R"({"messages": [{"role": "user", "content": "hi"}], "tools": )";
  OpenAiError e;
  EXPECT_TRUE(
      ParseOpenAiRequest(OpenAiEndpoint::kChat, head + Nested(63) + "}", &e)
          .ok())
      << e.message;
  for (int n : {64, 100000}) {
    absl::StatusOr<OpenAiRequest> r =
        ParseOpenAiRequest(OpenAiEndpoint::kChat, head + Nested(n) + "}", &e);
    EXPECT_FALSE(r.ok()) << n;
    EXPECT_EQ(e.http_status, 400);
    EXPECT_THAT(e.message,
                HasSubstr("nests arrays and objects deeper than 64 levels"));
  }
}

// The data lines of a stream's events, parsed ("[DONE]" as a string).
std::vector<Json> Events(const std::string& sse) {
  std::vector<Json> out;
  size_t at = 0;
  while ((at = sse.find("data: ", at)) != std::string::npos) {
    const size_t end = sse.find("\n\n", at);
    const std::string data = sse.substr(at + 6, end - at - 6);
    out.push_back(data == "[DONE]" ? Json(data) : Json::parse(data));
    at = end;
  }
  return out;
}

OpenAiAnswerContext ToolContext() {
  OpenAiAnswerContext ctx;
  ctx.id = "chatcmpl-7";
  ctx.model = "m";
  ctx.tool_calls = ToolCallSyntax::kHermes;
  return ctx;
}

GenerationUpdate Update(std::string text, bool finished = false) {
  GenerationUpdate u;
  u.text = std::move(text);
  u.finished = finished;
  if (finished) u.finish_reason = FinishReason::kEosToken;
  return u;
}

// A Qwen-style answer with a call comes back as OpenAI's tool_calls, with
// content null and finish_reason "tool_calls"; the same text without tools
// in the request is content.
TEST(OpenAiProtocol, UnaryAnswersCarryTheirToolCalls) {
  const std::string text =
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
      "{\"city\": \"Oslo\"}}\n</tool_call>";
  const Json j =
      Json::parse(CompletionJson(ToolContext(), text, {}, Update("", true)));
  const Json& choice = j["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_TRUE(choice["message"]["content"].is_null());
  const Json& call = choice["message"]["tool_calls"][0];
  EXPECT_THAT(call["id"].get<std::string>(),
              ::testing::MatchesRegex("call_[0-9a-f]{24}"));
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(Json::parse(call["function"]["arguments"].get<std::string>()),
            (Json{{"city", "Oslo"}}));

  OpenAiAnswerContext plain = ToolContext();
  plain.tool_calls = ToolCallSyntax::kNone;
  const Json p = Json::parse(CompletionJson(plain, text, {}, Update("", true)));
  EXPECT_EQ(p["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(p["choices"][0]["message"]["content"], text);
  EXPECT_FALSE(p["choices"][0]["message"].contains("tool_calls"));
}

// Streamed: the text before the call goes out as it comes, the call's text
// never does; the end sends the call as one delta (index 0) and
// finish_reason "tool_calls".
TEST(OpenAiProtocol, StreamsHoldTheCallAndSendItAtTheEnd) {
  const OpenAiAnswerContext ctx = ToolContext();
  ToolCallStream held;
  const std::vector<std::string> pieces = {
      "Checking", " now.<tool", "_call>{\"name\": \"f\", ",
      "\"arguments\": {\"x\": 1}}</tool_call>"};
  std::string content;
  Json calls, finish;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const bool last = i + 1 == pieces.size();
    for (const Json& e :
         Events(StreamEvents(ctx, Update(pieces[i], last), i == 0,
                             /*include_usage=*/false, &held))) {
      if (!e.is_object()) continue;
      const Json& c = e["choices"][0];
      if (c["delta"].contains("content")) {
        content += c["delta"]["content"].get<std::string>();
      }
      if (c["delta"].contains("tool_calls")) calls = c["delta"]["tool_calls"];
      if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
    }
    // Nothing of the call's text is sent before the end.
    EXPECT_EQ(content.find('<'), std::string::npos) << content;
  }
  EXPECT_EQ(content, "Checking now.");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["index"], 0);
  EXPECT_EQ(calls[0]["function"]["name"], "f");
  EXPECT_EQ(Json::parse(calls[0]["function"]["arguments"].get<std::string>()),
            (Json{{"x", 1}}));
  EXPECT_EQ(finish, "tool_calls");

  // A held tail that turns out to be text is sent at the end as content.
  ToolCallStream plain;
  std::string text;
  for (const char* piece : {"a <tool", "box>"}) {
    for (const Json& e :
         Events(StreamEvents(ctx, Update(piece, std::string(piece) == "box>"),
                             false, false, &plain))) {
      if (e.is_object() && e["choices"][0]["delta"].contains("content")) {
        text += e["choices"][0]["delta"]["content"].get<std::string>();
      }
    }
  }
  EXPECT_EQ(text, "a <toolbox>");
}

}  // namespace
}  // namespace spikeserve
