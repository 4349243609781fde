#include "server/grpc/request_validation.h"

#include <cmath>
#include <functional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/text/tokenizer_spec.h"
#include "tests/fixtures/gguf_builder.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::TinyLlama;
using ::testing::HasSubstr;

class RequestValidation : public ::testing::Test {
 protected:
  void SetUp() override {
    bytes_ = TinyLlama({.context = 128}).Build();
    file_ = *GgufFile::FromBuffer(
        reinterpret_cast<const uint8_t*>(bytes_.data()), bytes_.size());
    config_ = *ReadModelConfig(*file_);
    tok_ = *Tokenizer::Create(*LoadTokenizerSpec(*file_));
    // Context left: 125 (the pool of 64 blocks holds more).
    limits_.context = {.model_context = config_.context_length,
                       .prefix_tokens = 3,
                       .kv_blocks = 64,
                       .block_tokens = 16};
  }
  absl::StatusOr<GenerationRequest> Convert(const v1::GenerateRequest& r) {
    return ToGenerationRequest(r, *tok_, config_, limits_);
  }
  static v1::GenerateRequest Valid() {
    v1::GenerateRequest r;
    r.set_request_id("req-1");
    r.set_text("hello");
    return r;
  }
  std::string bytes_;
  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  std::unique_ptr<Tokenizer> tok_;
  RequestLimits limits_;
};

TEST_F(RequestValidation, ConvertsAValidRequest) {
  v1::GenerateRequest r = Valid();
  r.mutable_sampling()->set_temperature(0.7f);
  r.mutable_sampling()->set_seed(9);
  r.mutable_stopping()->set_max_new_tokens(10);
  r.mutable_stopping()->add_stop_sequences("\n\n");
  r.set_top_n_tokens(3);
  auto g = Convert(r);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->id, "req-1");
  EXPECT_EQ(g->prompt, *tok_->Encode("hello", false, false));
  EXPECT_EQ(g->stopping.max_new_tokens, 10);
  EXPECT_EQ(g->sampling.top_p, 1.0f);               // 0 = off
  EXPECT_EQ(g->sampling.repetition_penalty, 1.0f);  // 0 = off
  EXPECT_EQ(g->sampling.seed, 9u);
  EXPECT_EQ(g->top_n, 3);
}

TEST_F(RequestValidation, DefaultMaxNewTokensShrinksToTheContext) {
  v1::GenerateRequest r;
  r.mutable_tokens()->mutable_ids()->Resize(100, 5);
  auto g = Convert(r);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stopping.max_new_tokens, 25);  // 125 - 100
}

// Issue 23 D7: the KV pool can be what limits a request (3 blocks of 16
// after the prefix's block: 48 tokens), and validation says so with the
// same number the engine admits.
TEST_F(RequestValidation, ThePoolCanLimitTheContext) {
  limits_.context.kv_blocks = 4;
  ASSERT_EQ(limits_.context.MaxTokens(), 48);
  v1::GenerateRequest r;
  r.mutable_tokens()->mutable_ids()->Resize(40, 5);
  auto g = Convert(r);  // unset max_new_tokens: shrinks to the 8 left
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stopping.max_new_tokens, 8);
  r.mutable_stopping()->set_max_new_tokens(8);
  ASSERT_TRUE(Convert(r).ok());
  r.mutable_stopping()->set_max_new_tokens(9);
  EXPECT_THAT(std::string(Convert(r).status().message()),
              HasSubstr("stopping.max_new_tokens = 9 with a prompt of 40 "
                        "tokens exceeds the context of 48 tokens (allowed "
                        "1..8)"));
  r.mutable_tokens()->mutable_ids()->Resize(48, 5);
  EXPECT_THAT(std::string(Convert(r).status().message()),
              HasSubstr("input has 48 tokens; the context holds 48"));
}

struct Bad {
  const char* name;
  void (*mutate)(v1::GenerateRequest&);
  const char* expected;
};

TEST_F(RequestValidation, RejectsInvalidRequestsNamingTheField) {
  const Bad cases[] = {
      {"no input", [](v1::GenerateRequest& r) { r.clear_input(); },
       "input is missing"},
      {"empty text", [](v1::GenerateRequest& r) { r.set_text(""); },
       "input.text is empty"},
      {"invalid utf-8 text",
       [](v1::GenerateRequest& r) { r.set_text("a\xff"); },
       "input.text is not valid UTF-8"},
      {"empty token list", [](v1::GenerateRequest& r) { r.mutable_tokens(); },
       "input.tokens.ids is empty"},
      {"unknown token id",
       [](v1::GenerateRequest& r) {
         r.mutable_tokens()->add_ids(5);
         r.mutable_tokens()->add_ids(300);
       },
       "input.tokens.ids[1] = 300 is outside the vocabulary [0, 300)"},
      {"negative token id",
       [](v1::GenerateRequest& r) { r.mutable_tokens()->add_ids(-1); },
       "input.tokens.ids[0] = -1"},
      {"prompt longer than context",
       [](v1::GenerateRequest& r) {
         r.mutable_tokens()->mutable_ids()->Resize(125, 7);
       },
       "input has 125 tokens; the context holds 125"},
      {"max_new_tokens above context",
       [](v1::GenerateRequest& r) {
         r.mutable_stopping()->set_max_new_tokens(1000);
       },
       "stopping.max_new_tokens = 1000"},
      {"negative temperature",
       [](v1::GenerateRequest& r) {
         r.mutable_sampling()->set_temperature(-1);
       },
       "sampling.temperature = -1"},
      {"NaN temperature",
       [](v1::GenerateRequest& r) {
         r.mutable_sampling()->set_temperature(NAN);
       },
       "sampling.temperature = nan"},
      {"top_p above 1",
       [](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_p(1.5f); },
       "sampling.top_p = 1.5 is outside the allowed range (0, 1]"},
      {"negative top_p",
       [](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_p(-0.1f); },
       "sampling.top_p"},
      {"negative top_k",
       [](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_k(-2); },
       "sampling.top_k"},
      {"top_k above vocab",
       [](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_k(301); },
       "sampling.top_k = 301 exceeds the vocabulary of 300"},
      {"min_p of 1",
       [](v1::GenerateRequest& r) { r.mutable_sampling()->set_min_p(1); },
       "sampling.min_p"},
      {"presence penalty",
       [](v1::GenerateRequest& r) {
         r.mutable_sampling()->set_presence_penalty(3);
       },
       "sampling.presence_penalty"},
      {"invalid utf-8 stop string",
       [](v1::GenerateRequest& r) {
         r.mutable_stopping()->add_stop_sequences("\xc3(");
       },
       "stopping.stop_sequences[0] is not valid UTF-8"},
      {"empty stop string",
       [](v1::GenerateRequest& r) {
         r.mutable_stopping()->add_stop_sequences("");
       },
       "stopping.stop_sequences[0] is empty"},
      {"too many stop strings",
       [](v1::GenerateRequest& r) {
         for (int i = 0; i < 17; ++i)
           r.mutable_stopping()->add_stop_sequences("x");
       },
       "stopping.stop_sequences has 17 entries; at most 16"},
      {"long stop string",
       [](v1::GenerateRequest& r) {
         r.mutable_stopping()->add_stop_sequences(std::string(300, 'a'));
       },
       "longer than 256 bytes"},
      {"bad stop token id",
       [](v1::GenerateRequest& r) {
         r.mutable_stopping()->add_stop_token_ids(999);
       },
       "stopping.stop_token_ids[0] = 999"},
      // Each is compared with every generated token.
      {"1025 stop token ids",
       [](v1::GenerateRequest& r) {
         for (int i = 0; i < 1025; ++i) {
           r.mutable_stopping()->add_stop_token_ids(1);
         }
       },
       "stopping.stop_token_ids has 1025 ids; at most 1024"},
      {"too many logprobs",
       [](v1::GenerateRequest& r) { r.set_top_n_tokens(21); },
       "top_n_tokens = 21 is outside the allowed range [0, 20]"},
      // Issue 23 D9: values >= 2^31 wrapped to negative ints and passed.
      {"logprobs of 2^31",
       [](v1::GenerateRequest& r) { r.set_top_n_tokens(2147483648u); },
       "top_n_tokens = 2147483648 is outside the allowed range [0, 20]"},
      {"logprobs of 2^32 - 1",
       [](v1::GenerateRequest& r) { r.set_top_n_tokens(4294967295u); },
       "top_n_tokens = 4294967295 is outside the allowed range [0, 20]"},
      {"max_new_tokens of 2^32 - 1",
       [](v1::GenerateRequest& r) {
         r.mutable_stopping()->set_max_new_tokens(4294967295u);
       },
       "stopping.max_new_tokens = 4294967295"},
      {"request id with space",
       [](v1::GenerateRequest& r) { r.set_request_id("a b"); },
       "request_id must be printable ASCII"},
      {"request id in the server's namespace",
       [](v1::GenerateRequest& r) { r.set_request_id("spikeserve-171"); },
       "request_id must not start with 'spikeserve-'"},
      {"long request id",
       [](v1::GenerateRequest& r) { r.set_request_id(std::string(129, 'x')); },
       "request_id is longer than 128 bytes"},
  };
  for (const Bad& c : cases) {
    v1::GenerateRequest r = Valid();
    c.mutate(r);
    auto g = Convert(r);
    ASSERT_FALSE(g.ok()) << c.name;
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(g.status().message()), HasSubstr(c.expected))
        << c.name;
  }
}

// input.chat: rendered by the server's chat template; each message field
// is checked and named.
// n arrays, each inside the last: "[[...]]".
std::string Nested(int n) {
  return std::string(size_t(n), '[') + std::string(size_t(n), ']');
}

// A text that cannot fit (more bytes than the context's 125 tokens of the
// longest token) is refused before it is tokenized; one that may fit is
// tokenized and judged by its tokens.
TEST_F(RequestValidation, TextsLongerThanTheContextCanHoldAreRefusedFirst) {
  const size_t bound = size_t(125) * tok_->max_token_bytes();
  v1::GenerateRequest r = Valid();
  r.set_text(std::string(bound + 1, 'a'));
  absl::StatusOr<GenerationRequest> g = Convert(r);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(g.status().message(),
              HasSubstr(absl::StrCat("input.text has ", bound + 1,
                                     " bytes: more than the context of 125 "
                                     "tokens can hold")));
  r.set_text(std::string(bound, 'a'));
  g = Convert(r);
  EXPECT_THAT(g.status().message(), ::testing::Not(HasSubstr("bytes:")));

  auto chat = ChatPrompt::Create(
      "{% for m in messages %}{{ m.content }}"
      "{% endfor %}",
      "test", tok_.get());
  ASSERT_TRUE(chat.ok()) << chat.status();
  v1::GenerateRequest c = Valid();
  v1::ChatMessage* m = c.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content(std::string(bound + 1, 'a'));
  g = ToGenerationRequest(c, *tok_, config_, limits_, chat->get());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      g.status().message(),
      HasSubstr(absl::StrCat("the rendered chat has ", bound + 1, " bytes")));
}

TEST_F(RequestValidation, ChatInputThroughTheTemplate) {
  auto chat = ChatPrompt::Create(
      "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
      "{% if add_generation_prompt %}[assistant]{% endif %}",
      "test", tok_.get());
  ASSERT_TRUE(chat.ok()) << chat.status();
  v1::GenerateRequest r = Valid();
  v1::ChatMessage* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("hi");
  auto g = ToGenerationRequest(r, *tok_, config_, limits_, chat->get());
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->prompt, *tok_->Encode("[user]hi[assistant]", false, true));
  r.mutable_chat()->set_continue_final_message(true);
  g = ToGenerationRequest(r, *tok_, config_, limits_, chat->get());
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->prompt, *tok_->Encode("[user]hi", false, true));

  // Without a template: FAILED_PRECONDITION naming the way out.
  g = ToGenerationRequest(r, *tok_, config_, limits_, nullptr);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(g.status().message(), HasSubstr("--chat_template"));

  struct Bad {
    const char* name;
    std::function<void(v1::ChatInput&)> mutate;
    const char* expected;
  };
  const Bad cases[] = {
      {"no messages", [](v1::ChatInput& c) { c.clear_messages(); },
       "input.chat.messages is empty"},
      {"unknown role",
       [](v1::ChatInput& c) { c.mutable_messages(0)->set_role("root"); },
       "input.chat.messages[0].role = \"root\" is not one of"},
      {"bad UTF-8 content",
       [](v1::ChatInput& c) { c.mutable_messages(0)->set_content("\xff"); },
       "input.chat.messages[0].content is not valid UTF-8"},
      {"bad UTF-8 name",
       [](v1::ChatInput& c) { c.mutable_messages(0)->set_name("\xc3"); },
       "input.chat.messages[0].name is not valid UTF-8"},
      {"tools not JSON", [](v1::ChatInput& c) { c.set_tools_json("[{"); },
       "input.chat.tools_json is not valid JSON"},
      // Read recursively after parsing (JsonToJinja, tojson): deep nesting
      // would overflow the serving thread's stack.
      {"tools nested 65 deep",
       [](v1::ChatInput& c) { c.set_tools_json(Nested(65)); },
       "input.chat.tools_json nests arrays and objects deeper than 64"},
      {"tools nested a million deep",
       [](v1::ChatInput& c) { c.set_tools_json(Nested(1000000)); },
       "input.chat.tools_json nests arrays and objects deeper than 64"},
      {"tool calls nested 65 deep",
       [](v1::ChatInput& c) {
         c.mutable_messages(0)->set_tool_calls_json(Nested(65));
       },
       "tool_calls_json nests arrays and objects deeper than 64"},
      {"tools an object", [](v1::ChatInput& c) { c.set_tools_json("{}"); },
       "input.chat.tools_json is not a JSON array"},
      {"tool calls not a list",
       [](v1::ChatInput& c) {
         c.mutable_messages(0)->set_tool_calls_json("\"x\"");
       },
       "input.chat.messages[0].tool_calls_json is not a JSON array"},
  };
  // 64 levels are accepted.
  v1::GenerateRequest deep = r;
  deep.mutable_chat()->set_tools_json(Nested(64));
  EXPECT_TRUE(
      ToGenerationRequest(deep, *tok_, config_, limits_, chat->get()).ok());
  for (const Bad& c : cases) {
    v1::GenerateRequest bad = r;
    c.mutate(*bad.mutable_chat());
    auto b = ToGenerationRequest(bad, *tok_, config_, limits_, chat->get());
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(b.status().message()), HasSubstr(c.expected))
        << c.name;
  }
}

}  // namespace
}  // namespace spikeserve
