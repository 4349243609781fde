// ChatPrompt: messages through a chat template into prompt tokens. The
// expected tokens are those of the hand-written rendered text, so every
// case is checkable by reading it; jinja2 parity of the interpreter itself
// is chat_template_golden_test's.
#include "server/chat/chat_prompt.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/gguf/gguf_reader.h"
#include "runtime/text/tokenizer_spec.h"
#include "server/chat/json_to_jinja.h"
#include "tests/fixtures/gguf_builder.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::TinyLlama;
using ::testing::HasSubstr;

// A ChatML-like template that writes BOS itself when `with_bos`.
std::string Template(bool with_bos) {
  return std::string(with_bos ? "{{ bos_token }}" : "") +
         "{% for m in messages %}<{{ m.role }}>{{ m.content }}<|eos|>"
         "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
}

std::unique_ptr<Tokenizer> TinyTokenizer(std::optional<bool> add_bos) {
  const std::string bytes = TinyLlama({.add_bos = add_bos}).Build();
  auto file = GgufFile::FromBuffer(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return *Tokenizer::Create(*LoadTokenizerSpec(**file));
}

struct BosCase {
  const char* name;
  bool model_adds_bos;
  bool template_writes_bos;
  int expected_bos;  // BOS tokens at the start of the prompt
};

class ChatPromptBos : public ::testing::TestWithParam<BosCase> {};

TEST_P(ChatPromptBos, ExactlyTheBosTheModelAsksFor) {
  const BosCase& c = GetParam();
  auto tok = TinyTokenizer(c.model_adds_bos);
  auto chat =
      ChatPrompt::Create(Template(c.template_writes_bos), "test", tok.get());
  ASSERT_TRUE(chat.ok()) << chat.status();
  const std::vector<ChatMessage> messages = {{"system", "be brief"},
                                             {"user", "hi"}};
  auto ids = (*chat)->Encode(messages, ChatEnding::kGenerationPrompt);
  ASSERT_TRUE(ids.ok()) << ids.status();
  // The special token written as text by the template is parsed.
  std::vector<int32_t> expected(c.expected_bos, tok->bos_id());
  auto body = tok->Encode("<system>be brief<|eos|><user>hi<|eos|><assistant>",
                          false, true);
  expected.insert(expected.end(), body->begin(), body->end());
  EXPECT_EQ(*ids, expected);
  EXPECT_EQ(std::count(ids->begin(), ids->end(), tok->eos_id()), 2);
}

INSTANTIATE_TEST_SUITE_P(
    All, ChatPromptBos,
    ::testing::Values(BosCase{"adds_template_silent", true, false, 1},
                      BosCase{"adds_template_writes", true, true, 1},
                      BosCase{"no_bos_template_silent", false, false, 0},
                      // The template's own BOS stays: it is the model's text.
                      BosCase{"no_bos_template_writes", false, true, 1}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ChatPrompt, GenerationPromptAndContinuation) {
  auto tok = TinyTokenizer(false);
  auto chat = *ChatPrompt::Create(Template(false), "test", tok.get());
  const std::vector<ChatMessage> messages = {{"user", "hi"},
                                             {"assistant", "  Hello, "}};
  EXPECT_EQ(*chat->Render(messages, ChatEnding::kGenerationPrompt),
            "<user>hi<|eos|><assistant>  Hello, <|eos|><assistant>");
  // Cut after the (trimmed) final content: no end-of-turn, no new turn.
  EXPECT_EQ(*chat->Render(messages, ChatEnding::kContinueFinalMessage),
            "<user>hi<|eos|><assistant>  Hello,");
}

// The final content is stripped as Python's str.strip (transformers), so
// a template that writes it through |trim (Llama 3's) can be continued
// when it ends in a non-ASCII space (U+00A0 here).
TEST(ChatPrompt, ContinuationStripsAsPython) {
  auto tok = TinyTokenizer(false);
  auto chat = *ChatPrompt::Create(
      "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}<|eos|>"
      "{% endfor %}",
      "test", tok.get());
  const std::vector<ChatMessage> messages = {{"user", "hi"},
                                             {"assistant", "Hello,\xC2\xA0"}};
  EXPECT_EQ(*chat->Render(messages, ChatEnding::kContinueFinalMessage),
            "<user>hi<|eos|><assistant>Hello,");
}

TEST(ChatPrompt, PassesNameAndToolCallId) {
  auto tok = TinyTokenizer(false);
  auto chat = *ChatPrompt::Create(
      "{% for m in messages %}{{ m.role }}:{{ m.name | default('-') }}:"
      "{{ m.tool_call_id | default('-') }};{% endfor %}",
      "test", tok.get());
  std::vector<ChatMessage> messages = {{"user", "a"}, {"tool", "42"}};
  messages[0].name = "ann";
  messages[1].tool_call_id = "call_1";
  EXPECT_EQ(*chat->Render(messages, ChatEnding::kGenerationPrompt),
            "user:ann:-;tool:-:call_1;");
}

// tools reach the template only when given (templates test `tools is
// defined`); tool calls are the message's.
TEST(ChatPrompt, PassesToolsAndToolCalls) {
  auto tok = TinyTokenizer(false);
  auto chat = *ChatPrompt::Create(
      "{% if tools is defined %}{{ tools | tojson }}{% else %}none{% endif %}"
      "|{% for m in messages %}{% if m.tool_calls is defined %}"
      "{{ m.tool_calls[0].function.name }}{% endif %}{% endfor %}",
      "test", tok.get());
  std::vector<ChatMessage> messages = {{"user", "weather?"}, {"assistant", ""}};
  messages[1].tool_calls = JsonToJinja(nlohmann::ordered_json::parse(
      R"([{"id": "c1", "type": "function",
           "function": {"name": "get_weather", "arguments": "{}"}}])"));
  EXPECT_EQ(*chat->Render(messages, ChatEnding::kGenerationPrompt),
            "none|get_weather");
  const JinjaValue tools = JsonToJinja(nlohmann::ordered_json::parse(
      R"([{"type": "function", "function": {"name": "get_weather"}}])"));
  // tojson keeps the client's key order, as json.dumps of a dict does.
  EXPECT_EQ(*chat->Render(messages, ChatEnding::kGenerationPrompt, &tools),
            R"([{"type": "function", "function": {"name": "get_weather"}}])"
            "|get_weather");
}

struct ErrorCase {
  const char* name;
  std::string source;
  std::vector<ChatMessage> messages;
  ChatEnding ending;
  absl::StatusCode code;
  const char* message;
};

class ChatPromptErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ChatPromptErrors, ClearError) {
  const ErrorCase& c = GetParam();
  auto tok = TinyTokenizer(false);
  auto chat = ChatPrompt::Create(c.source, "test", tok.get());
  ASSERT_TRUE(chat.ok()) << chat.status();
  auto ids = (*chat)->Encode(c.messages, c.ending);
  EXPECT_EQ(ids.status().code(), c.code) << ids.status();
  EXPECT_THAT(ids.status().message(), HasSubstr(c.message));
}

INSTANTIATE_TEST_SUITE_P(
    All, ChatPromptErrors,
    ::testing::Values(
        ErrorCase{"no_messages",
                  Template(false),
                  {},
                  ChatEnding::kGenerationPrompt,
                  absl::StatusCode::kInvalidArgument,
                  "messages is empty"},
        ErrorCase{"unknown_role",
                  Template(false),
                  {{"robot", "x"}},
                  ChatEnding::kGenerationPrompt,
                  absl::StatusCode::kInvalidArgument,
                  "messages[0].role \"robot\" is not one of"},
        // The template's own message reaches the client as it is.
        ErrorCase{"raise_exception",
                  "{% if messages[0].role != 'user' %}{{ raise_exception("
                  "'Conversation must start with user') }}{% endif %}x",
                  {{"assistant", "x"}},
                  ChatEnding::kGenerationPrompt,
                  absl::StatusCode::kInvalidArgument,
                  "Conversation must start with user"},
        ErrorCase{"runtime_error",
                  "{{ messages[0].content + 1 }}",
                  {{"user", "x"}},
                  ChatEnding::kGenerationPrompt,
                  absl::StatusCode::kInvalidArgument,
                  "the chat template failed: line 1"},
        ErrorCase{"continue_unwritten",
                  "{% for m in messages %}x{% endfor %}",
                  {{"assistant", "hello"}},
                  ChatEnding::kContinueFinalMessage,
                  absl::StatusCode::kInvalidArgument,
                  "cannot be continued"},
        ErrorCase{"renders_nothing",
                  "",
                  {{"user", "x"}},
                  ChatEnding::kGenerationPrompt,
                  absl::StatusCode::kInvalidArgument,
                  "rendered no tokens"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ChatPrompt, ATemplateThatDoesNotParseNamesOriginLineAndColumn) {
  auto tok = TinyTokenizer(false);
  auto chat =
      ChatPrompt::Create("ok\n{% for m in messages %}", "the file", tok.get());
  ASSERT_FALSE(chat.ok());
  EXPECT_EQ(chat.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(chat.status().message(), HasSubstr("(the file)"));
  EXPECT_THAT(chat.status().message(), HasSubstr("line 2"));
}

}  // namespace
}  // namespace spikeserve
