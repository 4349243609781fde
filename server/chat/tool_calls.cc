#include "server/chat/tool_calls.h"

#include <functional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "server/client_json.h"

namespace spikeserve {
namespace {

using Json = nlohmann::ordered_json;

constexpr absl::string_view kHermesOpen = "<tool_call>";
constexpr absl::string_view kHermesClose = "</tool_call>";
constexpr absl::string_view kMistralMarker = "[TOOL_CALLS]";
constexpr absl::string_view kPythonTag = "<|python_tag|>";

// A call from {"name": N, "arguments" | "parameters": A}, A an object or a
// string holding one; false for anything else (a JSON answer that merely
// has a "name" is not a call).
bool AddCall(const Json& j, std::vector<ToolCall>* calls) {
  if (!j.is_object()) return false;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->empty()) return false;
  auto args = j.find("arguments");
  if (args == j.end()) args = j.find("parameters");
  if (args == j.end()) return false;
  Json object = *args;
  if (args->is_string()) {
    std::string why;
    object = ParseClientJson(args->get<std::string>(), &why);
  }
  if (!object.is_object()) return false;
  calls->push_back({name->get<std::string>(), object.dump()});
  return true;
}

bool AddCall(absl::string_view json, std::vector<ToolCall>* calls) {
  std::string why;
  return AddCall(ParseClientJson(absl::StripAsciiWhitespace(json), &why),
                 calls);
}

// One past the '}' that closes the object opening at text[start] ('{'),
// skipping strings; npos if it does not close.
size_t ObjectEnd(absl::string_view text, size_t start) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = start; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == '}' || c == ']') && --depth == 0) {
      return i + 1;
    }
  }
  return absl::string_view::npos;
}

ToolCallAnswer Hermes(absl::string_view text) {
  ToolCallAnswer out;
  std::string content;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t open = text.find(kHermesOpen, pos);
    if (open == absl::string_view::npos) {
      absl::StrAppend(&content, text.substr(pos));
      break;
    }
    absl::StrAppend(&content, text.substr(pos, open - pos));
    const size_t body = open + kHermesOpen.size();
    // An answer may end (end-of-turn) before the closing tag.
    const size_t close = text.find(kHermesClose, body);
    const size_t end = close == absl::string_view::npos ? text.size() : close;
    if (!AddCall(text.substr(body, end - body), &out.calls)) return {};
    pos = close == absl::string_view::npos ? text.size()
                                           : close + kHermesClose.size();
  }
  out.content = std::string(absl::StripAsciiWhitespace(content));
  return out;
}

ToolCallAnswer Llama3Json(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (absl::ConsumePrefix(&t, kPythonTag))
    t = absl::StripLeadingAsciiWhitespace(t);
  ToolCallAnswer out;
  size_t pos = 0;
  while (pos < t.size()) {
    if (t[pos] != '{') return {};
    const size_t end = ObjectEnd(t, pos);
    if (end == absl::string_view::npos ||
        !AddCall(t.substr(pos, end - pos), &out.calls)) {
      return {};
    }
    pos = end;
    while (pos < t.size() && (absl::ascii_isspace(t[pos]) || t[pos] == ';')) {
      ++pos;
    }
  }
  return out;
}

ToolCallAnswer Mistral(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (absl::ConsumePrefix(&t, kMistralMarker)) {
    t = absl::StripLeadingAsciiWhitespace(t);
  }
  if (t.empty() || t[0] != '[') return {};
  std::string why;
  const Json j = ParseClientJson(t, &why);
  if (!j.is_array() || j.empty()) return {};
  ToolCallAnswer out;
  for (const Json& call : j) {
    if (!AddCall(call, &out.calls)) return {};
  }
  return out;
}

}  // namespace

ToolCallSyntax ToolCallSyntaxOf(absl::string_view template_source) {
  if (absl::StrContains(template_source, kHermesOpen)) {
    return ToolCallSyntax::kHermes;
  }
  if (absl::StrContains(template_source, kMistralMarker)) {
    return ToolCallSyntax::kMistral;
  }
  // Llama 3.1-3.3 describe the JSON they expect in these words.
  if (absl::StrContains(template_source,
                        "\"parameters\": dictionary of argument name")) {
    return ToolCallSyntax::kLlama3Json;
  }
  return ToolCallSyntax::kNone;
}

const char* ToolCallSyntaxName(ToolCallSyntax s) {
  switch (s) {
    case ToolCallSyntax::kHermes:
      return "hermes";
    case ToolCallSyntax::kLlama3Json:
      return "llama3_json";
    case ToolCallSyntax::kMistral:
      return "mistral";
    default:
      return "none";
  }
}

ToolCallAnswer ParseToolCalls(ToolCallSyntax s, absl::string_view text) {
  ToolCallAnswer out;
  switch (s) {
    case ToolCallSyntax::kHermes:
      out = Hermes(text);
      break;
    case ToolCallSyntax::kLlama3Json:
      out = Llama3Json(text);
      break;
    case ToolCallSyntax::kMistral:
      out = Mistral(text);
      break;
    default:
      break;
  }
  if (out.calls.empty()) return {std::string(text), {}};
  return out;
}

size_t SureContent(ToolCallSyntax s, absl::string_view text, size_t sure) {
  if (s == ToolCallSyntax::kNone) return text.size();
  if (s == ToolCallSyntax::kHermes) {
    // A tag cannot begin before `sure` (the earlier call held its start).
    const size_t open = text.find(kHermesOpen, sure);
    if (open != absl::string_view::npos) return open;
    // Hold a tail that may be the tag's beginning.
    for (size_t k = std::min(text.size(), kHermesOpen.size() - 1); k > 0; --k) {
      if (absl::EndsWith(text, kHermesOpen.substr(0, k))) {
        return text.size() - k;
      }
    }
    return text.size();
  }
  // JSON answers: held whole from their first character on; once some
  // content went out, the answer is not one.
  if (sure > 0) return text.size();
  const absl::string_view t = absl::StripLeadingAsciiWhitespace(text);
  if (t.empty()) return 0;
  const absl::string_view marker =
      s == ToolCallSyntax::kMistral ? kMistralMarker : kPythonTag;
  const bool may_be_marker =
      absl::StartsWith(t, marker) || absl::StartsWith(marker, t);
  const char json_open = s == ToolCallSyntax::kMistral ? '[' : '{';
  return t[0] == json_open || may_be_marker ? 0 : text.size();
}

std::string ToolCallId(ToolCallSyntax s, absl::string_view answer_id,
                       int index) {
  const std::hash<std::string> hash;
  const uint64_t a = hash(absl::StrCat(answer_id, "/", index));
  const uint64_t b = hash(absl::StrCat(index, "/", answer_id, "/call"));
  const std::string hex = absl::StrFormat("%016x%016x", a, b);
  if (s == ToolCallSyntax::kMistral) return hex.substr(0, 9);
  return absl::StrCat("call_", hex.substr(0, 24));
}

}  // namespace spikeserve
