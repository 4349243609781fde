// JSON from clients (an OpenAI request body, a gRPC request's tools and
// tool calls), parsed with its nesting bounded.
//
// nlohmann's parser keeps its own stack, but what reads a value afterwards
// recurses once per level: dump(), JsonToJinja, the chat template's tojson.
// A 4 MiB body of "[[[[..." nests two million levels and would overflow the
// stack of the thread serving it, ending the process for every client.
#ifndef SPIKESERVE_SERVER_CLIENT_JSON_H_
#define SPIKESERVE_SERVER_CLIENT_JSON_H_

#include <string>

#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace spikeserve {

// Levels of arrays and objects a client's JSON may nest: a tool's
// parameter schema takes two per level of its own nesting.
constexpr int kMaxClientJsonDepth = 64;

// The parsed value, or a discarded one with *why saying what is wrong
// ("is not valid JSON", "nests arrays and objects deeper than 64 levels").
nlohmann::ordered_json ParseClientJson(absl::string_view text,
                                       std::string* why);

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_CLIENT_JSON_H_
