// JSON (nlohmann::ordered_json) to JinjaValue: objects become dicts in
// their order and integers stay ints, as json.loads gives them to jinja2.
// The front end's bridge from a request's JSON (tools, tool calls) to a
// chat template's context; the Jinja tests build their contexts with it.
// Header-only, so that the runtime's tests use it without the server.
#ifndef SPIKESERVE_SERVER_CHAT_JSON_TO_JINJA_H_
#define SPIKESERVE_SERVER_CHAT_JSON_TO_JINJA_H_

#include <string>
#include <utility>

#include "nlohmann/json.hpp"
#include "runtime/text/jinja_value.h"

namespace spikeserve {

inline JinjaValue JsonToJinja(const nlohmann::ordered_json& j) {
  using Json = nlohmann::ordered_json;
  switch (j.type()) {
    case Json::value_t::null:
      return JinjaValue::None();
    case Json::value_t::boolean:
      return JinjaValue::Bool(j.get<bool>());
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return JinjaValue::Int(j.get<int64_t>());
    case Json::value_t::number_float:
      return JinjaValue::Float(j.get<double>());
    case Json::value_t::string:
      return JinjaValue::String(j.get<std::string>());
    case Json::value_t::array: {
      JinjaValue::ListData items;
      for (const Json& e : j) items.push_back(JsonToJinja(e));
      return JinjaValue::List(std::move(items));
    }
    case Json::value_t::object: {
      JinjaDict dict;
      for (const auto& [key, value] : j.items()) {
        dict.Set(key, JsonToJinja(value));
      }
      return JinjaValue::Dict(std::move(dict));
    }
    default:
      return JinjaValue::Undefined();
  }
}

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_CHAT_JSON_TO_JINJA_H_
