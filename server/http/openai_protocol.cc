#include "server/http/openai_protocol.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "server/chat/tool_calls.h"
#include "server/client_json.h"

namespace spikeserve {
namespace {

// Ordered: a client's tools keep their key order into the template's
// tojson (as Python dicts do), and answers read in OpenAI's order.
using Json = nlohmann::ordered_json;

// Invalid UTF-8 (a token's bytes may end inside a character) is replaced
// rather than thrown on.
std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Reads optional fields of a JSON object; the first problem wins and is
// kept in `error` (400, naming the field).
class Fields {
 public:
  Fields(const Json& obj, OpenAiError* error) : obj_(obj), error_(error) {}
  bool ok() const { return ok_; }

  // Present and not null.
  const Json* Find(const char* key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  void Fail(const char* key, std::string message) {
    if (!ok_) return;
    ok_ = false;
    error_->http_status = 400;
    error_->message = std::move(message);
    error_->param = key;
  }
  bool Number(const char* key, double lo, double hi, double* out) {
    const Json* v = Find(key);
    if (v == nullptr || !ok_) return false;
    if (!v->is_number()) {
      Fail(key, absl::StrCat("'", key, "' must be a number"));
      return false;
    }
    const double d = v->get<double>();
    if (!(d >= lo && d <= hi)) {
      Fail(key, absl::StrCat("'", key, "' = ", d, " is outside [", lo, ", ", hi,
                             "]"));
      return false;
    }
    *out = d;
    return true;
  }
  bool Integer(const char* key, int64_t lo, int64_t hi, int64_t* out) {
    const Json* v = Find(key);
    if (v == nullptr || !ok_) return false;
    if (!v->is_number_integer()) {
      Fail(key, absl::StrCat("'", key, "' must be an integer"));
      return false;
    }
    // Compared before narrowing: a huge unsigned value is out of range.
    if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(hi)) {
      Fail(key, absl::StrCat("'", key, "' is above ", hi));
      return false;
    }
    const int64_t i = v->get<int64_t>();
    if (i < lo || i > hi) {
      Fail(key, absl::StrCat("'", key, "' = ", i, " is outside [", lo, ", ", hi,
                             "]"));
      return false;
    }
    *out = i;
    return true;
  }
  bool Bool(const char* key, bool* out) {
    const Json* v = Find(key);
    if (v == nullptr || !ok_) return false;
    if (!v->is_boolean()) {
      Fail(key, absl::StrCat("'", key, "' must be a boolean"));
      return false;
    }
    *out = v->get<bool>();
    return true;
  }
  bool String(const char* key, std::string* out) {
    const Json* v = Find(key);
    if (v == nullptr || !ok_) return false;
    if (!v->is_string()) {
      Fail(key, absl::StrCat("'", key, "' must be a string"));
      return false;
    }
    *out = v->get<std::string>();
    return true;
  }

 private:
  const Json& obj_;
  OpenAiError* error_;
  bool ok_ = true;
};

// A message's content: a string, null, or text parts (joined by newlines,
// as vLLM does).
bool ContentText(const Json& content, std::string* out, std::string* why) {
  if (content.is_null()) return true;
  if (content.is_string()) {
    *out = content.get<std::string>();
    return true;
  }
  if (!content.is_array()) {
    *why = "must be a string or an array of text parts";
    return false;
  }
  std::vector<std::string> parts;
  for (const Json& p : content) {
    auto type = p.is_object() ? p.find("type") : p.end();
    auto text = p.is_object() ? p.find("text") : p.end();
    if (type == p.end() || !type->is_string() || *type != "text" ||
        text == p.end() || !text->is_string()) {
      *why =
          "has a part that is not {\"type\": \"text\", \"text\": string}; "
          "only text is supported";
      return false;
    }
    parts.push_back(text->get<std::string>());
  }
  *out = absl::StrJoin(parts, "\n");
  return true;
}

// OpenAI sends a tool call's function.arguments as a JSON string; chat
// templates (Qwen2.5's, Llama 3.1's, Hermes') render it with tojson or
// iterate it as a dict, so an object in a string is given as the object
// (as vLLM does). Anything else is left as sent.
Json ArgumentsAsObjects(const Json& calls) {
  Json out = calls;
  for (Json& call : out) {
    if (!call.is_object()) continue;
    auto fn = call.find("function");
    if (fn == call.end() || !fn->is_object()) continue;
    auto args = fn->find("arguments");
    if (args == fn->end() || !args->is_string()) continue;
    std::string why;
    Json parsed = ParseClientJson(args->get<std::string>(), &why);
    if (parsed.is_object()) *args = std::move(parsed);
  }
  return out;
}

void ParseMessages(const Json& body, v1::ChatInput* chat, Fields* f,
                   bool* tools_on) {
  const Json* messages = f->Find("messages");
  if (messages == nullptr) {
    f->Fail("messages", "'messages' is required");
    return;
  }
  if (!messages->is_array() || messages->empty()) {
    f->Fail("messages", "'messages' must be a non-empty array");
    return;
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    const Json& m = (*messages)[i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) {
      f->Fail("messages", absl::StrCat("'", at, "' must be an object"));
      return;
    }
    v1::ChatMessage* out = chat->add_messages();
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      f->Fail("messages", absl::StrCat("'", at, ".role' must be a string"));
      return;
    }
    // OpenAI's "developer" messages are the system prompt of its newer
    // models (its own examples and LangChain send them); chat templates
    // know only "system".
    const std::string r = role->get<std::string>();
    out->set_role(r == "developer" ? "system" : r);
    std::string why;
    auto content = m.find("content");
    if (content != m.end() &&
        !ContentText(*content, out->mutable_content(), &why)) {
      f->Fail("messages", absl::StrCat("'", at, ".content' ", why));
      return;
    }
    if (auto calls = m.find("tool_calls");
        calls != m.end() && !calls->is_null()) {
      if (!calls->is_array()) {
        f->Fail("messages",
                absl::StrCat("'", at, ".tool_calls' must be an array"));
        return;
      }
      out->set_tool_calls_json(Dump(ArgumentsAsObjects(*calls)));
    }
    for (const char* key : {"name", "tool_call_id"}) {
      auto v = m.find(key);
      if (v == m.end() || v->is_null()) continue;
      if (!v->is_string()) {
        f->Fail("messages",
                absl::StrCat("'", at, ".", key, "' must be a string"));
        return;
      }
      if (std::string(key) == "name") {
        out->set_name(v->get<std::string>());
      } else {
        out->set_tool_call_id(v->get<std::string>());
      }
    }
  }
  if (const Json* tools = f->Find("tools"); tools != nullptr) {
    if (!tools->is_array()) {
      f->Fail("tools", "'tools' must be an array");
      return;
    }
    if (!tools->empty()) chat->set_tools_json(Dump(*tools));
  }
  // Constraints the server cannot enforce are refused rather than ignored:
  // a client relying on them would get unconstrained text.
  if (const Json* rf = f->Find("response_format"); rf != nullptr) {
    auto type = rf->is_object() ? rf->find("type") : rf->end();
    if (type == rf->end() || *type != "text") {
      f->Fail("response_format",
              "'response_format' other than {\"type\": \"text\"} is not "
              "supported (no constrained decoding)");
      return;
    }
  }
  const Json* tc = f->Find("tool_choice");
  if (tc != nullptr) {
    if (!tc->is_string() || (*tc != "auto" && *tc != "none")) {
      f->Fail("tool_choice",
              "'tool_choice' must be \"auto\" or \"none\": forcing a tool "
              "call is not supported");
      return;
    }
  }
  *tools_on = !chat->tools_json().empty() && (tc == nullptr || *tc == "auto");
  bool cont = false;
  if (f->Bool("continue_final_message", &cont)) {
    chat->set_continue_final_message(cont);
  }
}

// OpenAI's logit_bias, {"token id": bias}, into `sampling`; ids and range
// are checked with the vocabulary (ToGenerationRequest,
// ValidateSamplingParams).
void ParseLogitBias(const Json& bias, v1::SamplingParams* sampling, Fields* f) {
  for (auto it = bias.begin(); it != bias.end(); ++it) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(it.key(), &id)) {
      f->Fail("logit_bias",
              absl::StrCat("'logit_bias' keys must be token ids, not '",
                           it.key(), "'"));
      return;
    }
    if (!it->is_number()) {
      f->Fail("logit_bias", "'logit_bias' values must be numbers");
      return;
    }
    (*sampling->mutable_logit_bias())[id] = float(it->get<double>());
  }
}

void ParsePrompt(const Json& body, v1::GenerateRequest* r, Fields* f) {
  const Json* prompt = f->Find("prompt");
  if (prompt == nullptr) {
    f->Fail("prompt", "'prompt' is required");
    return;
  }
  const Json* p = prompt;
  // A batch of one prompt is that prompt; more are refused (n = 1 only).
  if (p->is_array() && !p->empty() &&
      ((*p)[0].is_string() || (*p)[0].is_array())) {
    if (p->size() != 1) {
      f->Fail("prompt", "only one prompt per request is supported");
      return;
    }
    p = &(*p)[0];
  }
  if (p->is_string()) {
    r->set_text(p->get<std::string>());
    r->set_add_special_tokens(true);
    return;
  }
  if (p->is_array() && !p->empty()) {
    for (const Json& id : *p) {
      if (!id.is_number_integer() || id.get<int64_t>() < INT32_MIN ||
          id.get<int64_t>() > INT32_MAX) {
        f->Fail("prompt", "'prompt' token ids must be integers");
        return;
      }
      r->mutable_tokens()->add_ids(int32_t(id.get<int64_t>()));
    }
    return;
  }
  f->Fail("prompt",
          "'prompt' must be a string, an array of token ids, or an array "
          "holding one of them");
}

Json UsageJson(const GenerationUpdate& u) {
  return Json{{"prompt_tokens", u.prompt_tokens},
              {"completion_tokens", u.completion_tokens},
              {"total_tokens", u.prompt_tokens + u.completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

std::string TokenText(const Tokenizer* tok, int32_t id) {
  absl::StatusOr<std::string> t = tok->TokenBytes(id);
  return t.ok() ? *std::move(t) : std::string();
}

Json BytesJson(const std::string& s) {
  Json b = Json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

// Chat's logprobs.content entries for `tokens`.
Json ChatLogprobs(const OpenAiAnswerContext& ctx,
                  const std::vector<GeneratedToken>& tokens) {
  Json content = Json::array();
  for (const GeneratedToken& t : tokens) {
    const std::string text = TokenText(ctx.tokenizer, t.id);
    Json top = Json::array();
    for (const SampledToken& s : t.top) {
      const std::string st = TokenText(ctx.tokenizer, s.id);
      top.push_back(
          {{"token", st}, {"logprob", s.logprob}, {"bytes", BytesJson(st)}});
    }
    content.push_back({{"token", text},
                       {"logprob", t.logprob},
                       {"bytes", BytesJson(text)},
                       {"top_logprobs", std::move(top)}});
  }
  return Json{{"content", std::move(content)}};
}

// Completions' legacy logprobs object; `offset` is the text length before
// these tokens.
Json CompletionLogprobs(const OpenAiAnswerContext& ctx,
                        const std::vector<GeneratedToken>& tokens,
                        size_t offset) {
  Json j{{"tokens", Json::array()},
         {"token_logprobs", Json::array()},
         {"top_logprobs", Json::array()},
         {"text_offset", Json::array()}};
  for (const GeneratedToken& t : tokens) {
    const std::string text = TokenText(ctx.tokenizer, t.id);
    j["tokens"].push_back(text);
    j["token_logprobs"].push_back(t.logprob);
    Json top = Json::object();
    for (const SampledToken& s : t.top) {
      top[TokenText(ctx.tokenizer, s.id)] = s.logprob;
    }
    j["top_logprobs"].push_back(std::move(top));
    j["text_offset"].push_back(offset);
    offset += text.size();
  }
  return j;
}

Json Envelope(const OpenAiAnswerContext& ctx, const char* object) {
  return Json{{"id", ctx.id},
              {"object", object},
              {"created", ctx.created},
              {"model", ctx.model}};
}

}  // namespace

std::string ErrorJson(const OpenAiError& e) {
  Json err{{"message", e.message},
           {"type", e.type},
           {"param", e.param.empty() ? Json() : Json(e.param)},
           {"code", e.code.empty() ? Json() : Json(e.code)}};
  return Dump(Json{{"error", std::move(err)}});
}

OpenAiError ErrorFromStatus(const absl::Status& s) {
  OpenAiError e;
  e.message = std::string(s.message());
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      e.http_status = 400;
      break;
    case absl::StatusCode::kUnauthenticated:
      e.http_status = 401;
      e.type = "authentication_error";
      e.code = "invalid_api_key";
      break;
    case absl::StatusCode::kNotFound:
      e.http_status = 404;
      e.type = "not_found_error";
      break;
    case absl::StatusCode::kResourceExhausted:
      e.http_status = 429;
      e.type = "rate_limit_error";
      break;
    case absl::StatusCode::kUnavailable:
      e.http_status = 503;
      e.type = "service_unavailable_error";
      break;
    default:
      e.http_status = 500;
      e.type = "server_error";
  }
  return e;
}

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint,
                                                 absl::string_view body,
                                                 OpenAiError* error) {
  *error = OpenAiError{};
  std::string why;
  const Json j = ParseClientJson(body, &why);
  if (j.is_discarded()) {
    error->message = absl::StrCat("the request body ", why);
    return absl::InvalidArgumentError(error->message);
  }
  if (!j.is_object()) {
    error->message = "the request body must be a JSON object";
    return absl::InvalidArgumentError(error->message);
  }
  OpenAiRequest out;
  out.endpoint = endpoint;
  Fields f(j, error);
  f.String("model", &out.model);
  v1::GenerateRequest& r = out.request;
  const bool chat = endpoint == OpenAiEndpoint::kChat;
  if (chat) {
    ParseMessages(j, r.mutable_chat(), &f, &out.tools);
  } else {
    ParsePrompt(j, &r, &f);
  }
  int64_t i = 0;
  double d = 0;
  // OpenAI's defaults: temperature 1, top_p 1; completions write 16
  // tokens unless told (chat: up to the server's default).
  r.mutable_sampling()->set_temperature(1.0f);
  if (!chat) r.mutable_stopping()->set_max_new_tokens(16);
  if (f.Integer("max_tokens", 1, INT32_MAX, &i)) {
    r.mutable_stopping()->set_max_new_tokens(uint32_t(i));
  }
  if (chat && f.Integer("max_completion_tokens", 1, INT32_MAX, &i)) {
    r.mutable_stopping()->set_max_new_tokens(uint32_t(i));
  }
  if (f.Number("temperature", 0, 2, &d)) {
    r.mutable_sampling()->set_temperature(float(d));
  }
  if (f.Number("top_p", 0, 1, &d)) {
    if (d == 0) {
      f.Fail("top_p", "'top_p' must be greater than 0");
    } else {
      r.mutable_sampling()->set_top_p(float(d));
    }
  }
  if (f.Number("presence_penalty", -2, 2, &d)) {
    r.mutable_sampling()->set_presence_penalty(float(d));
  }
  if (f.Number("frequency_penalty", -2, 2, &d)) {
    r.mutable_sampling()->set_frequency_penalty(float(d));
  }
  if (f.Integer("seed", INT64_MIN, INT64_MAX, &i)) {
    r.mutable_sampling()->set_seed(uint64_t(i));
  }
  if (f.Integer("n", 1, INT32_MAX, &i) && i != 1) {
    f.Fail("n", "'n' must be 1: one choice per request is supported");
  }
  if (const Json* stop = f.Find("stop"); stop != nullptr && f.ok()) {
    if (stop->is_string()) {
      r.mutable_stopping()->add_stop_sequences(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const Json& s : *stop) {
        if (!s.is_string()) {
          f.Fail("stop", "'stop' must be a string or an array of strings");
          break;
        }
        r.mutable_stopping()->add_stop_sequences(s.get<std::string>());
      }
    } else {
      f.Fail("stop", "'stop' must be a string or an array of strings");
    }
  }
  if (chat) {
    bool lp = false;
    if (f.Bool("logprobs", &lp)) out.logprobs = lp;
    if (f.Integer("top_logprobs", 0, 20, &i)) {
      if (!out.logprobs && i > 0) {
        f.Fail("top_logprobs", "'top_logprobs' needs 'logprobs': true");
      }
      r.set_top_n_tokens(uint32_t(i));
    }
  } else {
    if (f.Integer("logprobs", 0, 5, &i)) {
      out.logprobs = true;
      r.set_top_n_tokens(uint32_t(i));
    }
    bool echo = false;
    if (f.Bool("echo", &echo) && echo) {
      f.Fail("echo", "'echo' is not supported");
    }
    if (f.Find("suffix") != nullptr) {
      f.Fail("suffix", "'suffix' is not supported");
    }
    if (f.Integer("best_of", 1, INT32_MAX, &i) && i != 1) {
      f.Fail("best_of", "'best_of' must be 1");
    }
  }
  if (const Json* lb = f.Find("logit_bias"); lb != nullptr && f.ok()) {
    if (!lb->is_object()) {
      f.Fail("logit_bias", "'logit_bias' must be an object");
    } else {
      ParseLogitBias(*lb, r.mutable_sampling(), &f);
    }
  }
  // vLLM's extensions, which the engine has: keep generating past
  // end-of-generation tokens, top-k (-1 or 0: off), min-p, the
  // repetition penalty and stop token ids.
  bool ignore_eos = false;
  if (f.Bool("ignore_eos", &ignore_eos)) {
    r.mutable_stopping()->set_ignore_eos(ignore_eos);
  }
  if (f.Integer("top_k", -1, INT32_MAX, &i)) {
    r.mutable_sampling()->set_top_k(i < 0 ? 0 : int32_t(i));
  }
  if (f.Number("min_p", 0, 1, &d)) {
    if (d == 1) {
      f.Fail("min_p", "'min_p' must be below 1");
    } else {
      r.mutable_sampling()->set_min_p(float(d));
    }
  }
  if (f.Number("repetition_penalty", 0.01, 10, &d)) {
    r.mutable_sampling()->set_repetition_penalty(float(d));
  }
  if (const Json* ids = f.Find("stop_token_ids"); ids != nullptr && f.ok()) {
    if (!ids->is_array()) {
      f.Fail("stop_token_ids", "'stop_token_ids' must be an array of ints");
    } else {
      for (const Json& id : *ids) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
            id.get<int64_t>() > INT32_MAX) {
          f.Fail("stop_token_ids",
                 "'stop_token_ids' must be an array of token ids (ints >= 0)");
          break;
        }
        r.mutable_stopping()->add_stop_token_ids(int32_t(id.get<int64_t>()));
      }
    }
  }
  f.Bool("stream", &out.stream);
  if (const Json* so = f.Find("stream_options"); so != nullptr && f.ok()) {
    if (!so->is_object()) {
      f.Fail("stream_options", "'stream_options' must be an object");
    } else if (!out.stream) {
      // As OpenAI and vLLM: the options of a stream without one.
      f.Fail("stream_options",
             "'stream_options' is only allowed with 'stream': true");
    } else {
      Fields sf(*so, error);
      sf.Bool("include_usage", &out.include_usage);
      if (!sf.ok()) return absl::InvalidArgumentError(error->message);
    }
  }
  if (!f.ok()) return absl::InvalidArgumentError(error->message);
  return out;
}

const char* OpenAiFinishReason(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAborted:
    case FinishReason::kDeadline:
      return "abort";
    default:
      return "stop";
  }
}

namespace {

// OpenAI's tool_calls: [{id, type, function: {name, arguments}}], with
// each call's index in stream deltas.
Json ToolCallsJson(const OpenAiAnswerContext& ctx,
                   const std::vector<ToolCall>& calls, bool indexed) {
  Json out = Json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    Json call;
    if (indexed) call["index"] = i;
    call["id"] = ToolCallId(ctx.tool_calls, ctx.id, int(i));
    call["type"] = "function";
    call["function"] = {{"name", calls[i].name},
                        {"arguments", calls[i].arguments}};
    out.push_back(std::move(call));
  }
  return out;
}

// "tool_calls" when the answer made calls (it stopped by itself).
const char* FinishReasonOf(const GenerationUpdate& u, bool no_calls) {
  if (!no_calls && (u.finish_reason == FinishReason::kEosToken ||
                    u.finish_reason == FinishReason::kStopSequence)) {
    return "tool_calls";
  }
  return OpenAiFinishReason(u.finish_reason);
}

}  // namespace

std::string CompletionJson(const OpenAiAnswerContext& ctx,
                           const std::string& text,
                           const std::vector<GeneratedToken>& tokens,
                           const GenerationUpdate& final_update) {
  const bool chat = ctx.endpoint == OpenAiEndpoint::kChat;
  ToolCallAnswer answer;
  if (chat) answer = ParseToolCalls(ctx.tool_calls, text);
  Json choice{
      {"index", 0},
      {"finish_reason", FinishReasonOf(final_update, answer.calls.empty())},
      {"logprobs", nullptr}};
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", answer.content}};
    if (!answer.calls.empty()) {
      // OpenAI's content is null beside calls unless the model wrote text.
      if (answer.content.empty()) choice["message"]["content"] = nullptr;
      choice["message"]["tool_calls"] =
          ToolCallsJson(ctx, answer.calls, /*indexed=*/false);
    }
    if (ctx.logprobs) choice["logprobs"] = ChatLogprobs(ctx, tokens);
  } else {
    choice["text"] = text;
    if (ctx.logprobs) choice["logprobs"] = CompletionLogprobs(ctx, tokens, 0);
  }
  Json j = Envelope(ctx, chat ? "chat.completion" : "text_completion");
  j["choices"] = Json::array({std::move(choice)});
  j["usage"] = UsageJson(final_update);
  return Dump(j);
}

std::string StreamEvents(const OpenAiAnswerContext& ctx,
                         const GenerationUpdate& u, bool first,
                         bool include_usage, ToolCallStream* held) {
  const bool chat = ctx.endpoint == OpenAiEndpoint::kChat;
  const char* object = chat ? "chat.completion.chunk" : "text_completion";
  std::string out;
  auto emit = [&](Json choice) {
    Json j = Envelope(ctx, object);
    j["choices"] = Json::array({std::move(choice)});
    if (include_usage) j["usage"] = nullptr;
    absl::StrAppend(&out, "data: ", Dump(j), "\n\n");
  };
  if (!u.status.ok()) {
    // Headers are sent: the error travels as an event, then the end.
    OpenAiError e = ErrorFromStatus(u.status);
    absl::StrAppend(&out, "data: ", ErrorJson(e), "\n\ndata: [DONE]\n\n");
    return out;
  }
  if (chat && first) {
    emit({{"index", 0},
          {"delta", {{"role", "assistant"}, {"content", ""}}},
          {"logprobs", nullptr},
          {"finish_reason", nullptr}});
  }
  // With tools, content is sent as far as it cannot be a call's start; the
  // rest is held to the end, then sent as calls or as content.
  std::string text = u.text;
  Json calls;  // set when the answer's calls parsed
  if (chat && ctx.tool_calls != ToolCallSyntax::kNone) {
    absl::StrAppend(&held->answer, u.text);
    const absl::string_view answer = held->answer;
    if (!u.finished) {
      const size_t sure = SureContent(ctx.tool_calls, answer, held->sent);
      text = std::string(answer.substr(held->sent, sure - held->sent));
      held->sent = sure;
    } else {
      ToolCallAnswer a =
          ParseToolCalls(ctx.tool_calls, answer.substr(held->sent));
      text = std::move(a.content);
      if (!a.calls.empty()) {
        calls = ToolCallsJson(ctx, a.calls, /*indexed=*/true);
      }
    }
  }
  const bool calls_made = !calls.is_null();
  if (!text.empty() || (ctx.logprobs && !u.tokens.empty()) || calls_made) {
    Json choice{
        {"index", 0}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
    if (chat) {
      choice["delta"] = {{"content", text}};
      if (calls_made) choice["delta"]["tool_calls"] = std::move(calls);
      if (ctx.logprobs) choice["logprobs"] = ChatLogprobs(ctx, u.tokens);
    } else {
      choice["text"] = text;
      // text_offset restarts per chunk: clients that need offsets read them
      // from unary answers.
      if (ctx.logprobs)
        choice["logprobs"] = CompletionLogprobs(ctx, u.tokens, 0);
    }
    emit(std::move(choice));
  }
  if (!u.finished) return out;
  Json last{{"index", 0},
            {"logprobs", nullptr},
            {"finish_reason", FinishReasonOf(u, !calls_made)}};
  if (chat) {
    last["delta"] = Json::object();
  } else {
    last["text"] = "";
  }
  emit(std::move(last));
  if (include_usage) {
    Json j = Envelope(ctx, object);
    j["choices"] = Json::array();
    j["usage"] = UsageJson(u);
    absl::StrAppend(&out, "data: ", Dump(j), "\n\n");
  }
  absl::StrAppend(&out, "data: [DONE]\n\n");
  return out;
}

namespace {

Json ModelObject(const std::string& model, int64_t created) {
  return Json{{"id", model},
              {"object", "model"},
              {"created", created},
              {"owned_by", "spikeserve"}};
}

}  // namespace

std::string ModelsJson(const std::string& model, int64_t created) {
  return Dump(Json{{"object", "list"},
                   {"data", Json::array({ModelObject(model, created)})}});
}

std::string ModelJson(const std::string& model, int64_t created) {
  return Dump(ModelObject(model, created));
}

}  // namespace spikeserve
