// Tool calls in answers, in each family's syntax (server/chat/tool_calls.h):
// which real templates teach which syntax, what parses as calls and what
// stays content, and what a stream may send before the answer ends.
#include "server/chat/tool_calls.h"

#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace spikeserve {
namespace {

using Json = nlohmann::json;

std::string Template(const std::string& file) {
  std::ifstream f(
      std::string(SPIKESERVE_SOURCE_DIR) + "/tests/data/chat-templates/" + file,
      std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  EXPECT_FALSE(s.str().empty()) << file;
  return s.str();
}

// The syntax each family documents for its tool calls (vLLM's parser for
// it: hermes, llama3_json, mistral); templates that teach another one
// (Command R, Functionary, DeepSeek R1) or none are answered as text.
TEST(ToolCalls, RealTemplatesTeachTheirFamilysSyntax) {
  const std::pair<const char*, ToolCallSyntax> cases[] = {
      {"Qwen-Qwen2.5-7B-Instruct.jinja", ToolCallSyntax::kHermes},
      {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
       ToolCallSyntax::kHermes},
      {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
       ToolCallSyntax::kHermes},
      {"meta-llama-Llama-3.1-8B-Instruct.jinja", ToolCallSyntax::kLlama3Json},
      {"meta-llama-Llama-3.2-3B-Instruct.jinja", ToolCallSyntax::kLlama3Json},
      {"meta-llama-Llama-3.3-70B-Instruct.jinja", ToolCallSyntax::kLlama3Json},
      {"mistralai-Mistral-Nemo-Instruct-2407.jinja", ToolCallSyntax::kMistral},
      {"google-gemma-2-2b-it.jinja", ToolCallSyntax::kNone},
      {"microsoft-Phi-3.5-mini-instruct.jinja", ToolCallSyntax::kNone},
      {"CohereForAI-c4ai-command-r-plus-tool_use.jinja", ToolCallSyntax::kNone},
      {"meetkai-functionary-medium-v3.2.jinja", ToolCallSyntax::kNone},
      {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", ToolCallSyntax::kNone},
  };
  for (const auto& [file, syntax] : cases) {
    EXPECT_EQ(ToolCallSyntaxName(ToolCallSyntaxOf(Template(file))),
              std::string(ToolCallSyntaxName(syntax)))
        << file;
  }
}

struct ParseCase {
  const char* name;
  ToolCallSyntax syntax;
  std::string text;
  std::string content;                              // expected
  std::vector<std::pair<std::string, Json>> calls;  // name, arguments
};

TEST(ToolCalls, ParsesCallsOrKeepsTheTextAsContent) {
  using S = ToolCallSyntax;
  const ParseCase cases[] = {
      {"hermes call",
       S::kHermes,
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
       "\"Oslo\"}}\n</tool_call>",
       "",
       {{"get_weather", {{"city", "Oslo"}}}}},
      {"hermes text then two calls",
       S::kHermes,
       "Let me check.\n<tool_call>{\"name\": \"a\", \"arguments\": {}}"
       "</tool_call>\n<tool_call>{\"name\": \"b\", \"arguments\": {\"n\": 2}}"
       "</tool_call>",
       "Let me check.",
       {{"a", Json::object()}, {"b", {{"n", 2}}}}},
      {"hermes unclosed at the end",
       S::kHermes,
       "<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": [1, 2]}}",
       "",
       {{"f", {{"x", {1, 2}}}}}},
      {"hermes arguments in a string",
       S::kHermes,
       "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 1}\"}"
       "</tool_call>",
       "",
       {{"f", {{"x", 1}}}}},
      {"hermes malformed",
       S::kHermes,
       "<tool_call>{\"name\": \"f\", </tool_call>",
       "<tool_call>{\"name\": \"f\", </tool_call>",
       {}},
      {"hermes without arguments",
       S::kHermes,
       "<tool_call>{\"name\": \"f\"}</tool_call>",
       "<tool_call>{\"name\": \"f\"}</tool_call>",
       {}},
      {"hermes plain answer",
       S::kHermes,
       "  Hello there  ",
       "  Hello there  ",
       {}},
      {"llama3 call",
       S::kLlama3Json,
       "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
       "",
       {{"get_weather", {{"city", "Oslo"}}}}},
      // The ';' and '}' inside a string do not end the first call.
      {"llama3 python tag, two calls",
       S::kLlama3Json,
       "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"s\": \"x;}\"}}; "
       "{\"name\": \"b\", \"parameters\": {}}",
       "",
       {{"a", {{"s", "x;}"}}}, {"b", Json::object()}}},
      {"llama3 JSON that is no call",
       S::kLlama3Json,
       "{\"name\": \"Bob\", \"age\": 3}",
       "{\"name\": \"Bob\", \"age\": 3}",
       {}},
      {"llama3 text after the call",
       S::kLlama3Json,
       "{\"name\": \"a\", \"parameters\": {}} and so on",
       "{\"name\": \"a\", \"parameters\": {}} and so on",
       {}},
      {"mistral call",
       S::kMistral,
       "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"n\": 1}}]",
       "",
       {{"a", {{"n", 1}}}}},
      {"mistral without its control token",
       S::kMistral,
       "[{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", "
       "\"arguments\": {}}]",
       "",
       {{"a", Json::object()}, {"b", Json::object()}}},
      {"mistral markdown",
       S::kMistral,
       "[a link](http://x)",
       "[a link](http://x)",
       {}},
      {"no syntax",
       S::kNone,
       "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
       "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
       {}},
  };
  for (const ParseCase& c : cases) {
    SCOPED_TRACE(c.name);
    const ToolCallAnswer a = ParseToolCalls(c.syntax, c.text);
    EXPECT_EQ(a.content, c.content);
    ASSERT_EQ(a.calls.size(), c.calls.size());
    for (size_t i = 0; i < c.calls.size(); ++i) {
      EXPECT_EQ(a.calls[i].name, c.calls[i].first);
      EXPECT_EQ(Json::parse(a.calls[i].arguments), c.calls[i].second);
    }
  }
}

TEST(ToolCalls, StreamsSendWhatCannotBeginACall) {
  using S = ToolCallSyntax;
  const struct {
    ToolCallSyntax syntax;
    const char* text;
    size_t sure;
  } cases[] = {
      {S::kHermes, "Hello <tool", 6},  // "<tool" may become "<tool_call>"
      {S::kHermes, "Hello <b>", 9},
      {S::kHermes, "Hi<tool_call>{\"na", 2},
      {S::kHermes, "", 0},
      {S::kLlama3Json, "  ", 0},  // the first character decides
      {S::kLlama3Json, " {", 0},
      {S::kLlama3Json, "<|pyth", 0},
      {S::kLlama3Json, "Sure, {x}", 9},
      {S::kLlama3Json, "<b>", 3},
      {S::kMistral, "[TOOL", 0},
      {S::kMistral, "Hi [", 4},
      {S::kNone, "<tool_call>", 11},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(SureContent(c.syntax, c.text), c.sure)
        << ToolCallSyntaxName(c.syntax) << " \"" << c.text << "\"";
  }
  // Growing an answer a byte at a time, what is sure never shrinks and
  // stops where the call begins.
  const std::string answer =
      "I will look <it> up.\n<tool_call>{\"name\": \"a\", \"arguments\": {}}"
      "</tool_call>";
  size_t last = 0;
  for (size_t n = 0; n <= answer.size(); ++n) {
    const size_t sure = SureContent(S::kHermes, answer.substr(0, n));
    EXPECT_GE(sure, last) << n;
    EXPECT_LE(sure, answer.find("<tool_call>")) << n;
    last = sure;
  }
  EXPECT_EQ(last, answer.find("<tool_call>"));
}

TEST(ToolCalls, IdsTheTemplatesAccept) {
  const std::string m0 = ToolCallId(ToolCallSyntax::kMistral, "chatcmpl-1", 0);
  const std::string m1 = ToolCallId(ToolCallSyntax::kMistral, "chatcmpl-1", 1);
  EXPECT_THAT(m0, ::testing::MatchesRegex("[0-9a-f]{9}"));
  EXPECT_NE(m0, m1);
  const std::string h = ToolCallId(ToolCallSyntax::kHermes, "chatcmpl-1", 0);
  EXPECT_THAT(h, ::testing::MatchesRegex("call_[0-9a-f]{24}"));
  EXPECT_NE(h, ToolCallId(ToolCallSyntax::kHermes, "chatcmpl-2", 0));
}

}  // namespace
}  // namespace spikeserve
