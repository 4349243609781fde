// Engine updates into GenerateResponse messages
// (server/grpc/response_conversion.h): the last message's tool calls, parsed
// in the template's syntax, beside the model's whole text.
#include "server/grpc/response_conversion.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace spikeserve {
namespace {

using Json = nlohmann::json;

struct Case {
  const char* name;
  ToolCallSyntax syntax;
  std::string text;
  std::string content;                              // expected
  std::vector<std::pair<std::string, Json>> calls;  // name, arguments
};

TEST(SetToolCalls, FillsCallsAndContentOnlyWhenTheAnswerParses) {
  using S = ToolCallSyntax;
  const Case cases[] = {
      {"hermes text then two calls",
       S::kHermes,
       "Checking.\n<tool_call>{\"name\": \"a\", \"arguments\": {}}"
       "</tool_call>\n<tool_call>{\"name\": \"b\", \"arguments\": {\"n\": 2}}"
       "</tool_call>",
       "Checking.",
       {{"a", Json::object()}, {"b", {{"n", 2}}}}},
      {"llama3 call",
       S::kLlama3Json,
       "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
       "",
       {{"get_weather", {{"city", "Oslo"}}}}},
      {"mistral call",
       S::kMistral,
       "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": [1]}}]",
       "",
       {{"a", {{"x", {1}}}}}},
      {"hermes plain answer", S::kHermes, "Hello there", "", {}},
      {"hermes malformed", S::kHermes, "<tool_call>{\"name\": ", "", {}},
      // No tools in the request: a call-shaped answer stays text.
      {"no tools",
       S::kNone,
       "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>",
       "",
       {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::GenerateResponse r;
    r.set_text(c.text);
    SetToolCalls(c.syntax, "req-7", c.text, &r);
    EXPECT_EQ(r.text(), c.text);  // the model's output is left whole
    EXPECT_EQ(r.content(), c.content);
    ASSERT_EQ(r.tool_calls_size(), int(c.calls.size()));
    for (int i = 0; i < r.tool_calls_size(); ++i) {
      EXPECT_EQ(r.tool_calls(i).name(), c.calls[i].first);
      EXPECT_EQ(Json::parse(r.tool_calls(i).arguments_json()),
                c.calls[i].second);
      // The ids the OpenAI front end gives, distinct per call.
      EXPECT_EQ(r.tool_calls(i).id(), ToolCallId(c.syntax, "req-7", i));
      if (i > 0) {
        EXPECT_NE(r.tool_calls(i).id(), r.tool_calls(i - 1).id());
      }
    }
  }
}

// The last update's fields, and only the last's.
TEST(AppendUpdate, SetsTheEndOnTheFinalUpdateOnly) {
  GenerationUpdate u;
  u.text = "ab";
  u.tokens = {{1, -0.5f, {}}, {2, -1.5f, {}}};
  v1::GenerateResponse r;
  AppendUpdate(u, &r);
  EXPECT_EQ(r.text(), "ab");
  EXPECT_EQ(r.tokens_size(), 2);
  EXPECT_EQ(r.finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
  EXPECT_FALSE(r.has_usage());

  GenerationUpdate last;
  last.text = "c";
  last.finished = true;
  last.finish_reason = FinishReason::kStopSequence;
  last.prompt_tokens = 5;
  last.completion_tokens = 3;
  last.cached_tokens = 4;
  AppendUpdate(last, &r);
  EXPECT_EQ(r.text(), "abc");
  EXPECT_EQ(r.finish_reason(), v1::FINISH_REASON_STOP_SEQUENCE);
  EXPECT_EQ(r.usage().prompt_tokens(), 5u);
  EXPECT_EQ(r.usage().completion_tokens(), 3u);
  EXPECT_EQ(r.usage().cached_tokens(), 4u);
}

}  // namespace
}  // namespace spikeserve
