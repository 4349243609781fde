#include "server/client_json.h"

#include "absl/strings/str_cat.h"

namespace spikeserve {

nlohmann::ordered_json ParseClientJson(absl::string_view text,
                                       std::string* why) {
  using Json = nlohmann::ordered_json;
  bool too_deep = false;
  // depth is that of the array or object being opened, from 0 at the top.
  const Json::parser_callback_t bound =
      [&too_deep](int depth, Json::parse_event_t event, Json&) {
        if ((event == Json::parse_event_t::object_start ||
             event == Json::parse_event_t::array_start) &&
            depth >= kMaxClientJsonDepth) {
          too_deep = true;
        }
        return !too_deep;  // once too deep, keep nothing more
      };
  Json j = Json::parse(text.begin(), text.end(), bound,
                       /*allow_exceptions=*/false);
  if (too_deep) {
    *why = absl::StrCat("nests arrays and objects deeper than ",
                        kMaxClientJsonDepth, " levels");
    return Json(Json::value_t::discarded);
  }
  if (j.is_discarded()) *why = "is not valid JSON";
  return j;
}

}  // namespace spikeserve
