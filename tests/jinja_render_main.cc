// jinja_render: renders templates for tests/golden/jinja_differential.py.
// Reads JSON lines {"src": template, "ctx": {variables}} from the file named
// by argv[1] and prints one JSON line per input: {"out": text} or
// {"err": message, "raised": bool}. strftime_now is fixed at
// 2024-07-26 10:30 UTC. A development tool, not a test.
#include <fstream>
#include <iostream>
#include <string>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "runtime/text/jinja.h"
#include "server/chat/json_to_jinja.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: jinja_render CASES.jsonl\n";
    return 2;
  }
  using Json = nlohmann::ordered_json;
  std::ifstream in(argv[1]);
  spikeserve::ChatTemplate::RenderOptions options;
  options.now = absl::FromUnixSeconds(1721989800);
  std::string line;
  while (std::getline(in, line)) {
    const Json j = Json::parse(line);
    Json out;
    absl::StatusOr<spikeserve::ChatTemplate> t =
        spikeserve::ChatTemplate::Parse(j["src"].get<std::string>());
    if (!t.ok()) {
      out["err"] = std::string(t.status().message());
      out["raised"] = false;
    } else {
      absl::StatusOr<std::string> r =
          t->Render(spikeserve::JsonToJinja(j["ctx"]), options);
      if (r.ok()) {
        out["out"] = *r;
      } else {
        out["err"] = std::string(r.status().message());
        out["raised"] = spikeserve::IsRaisedByTemplate(r.status());
      }
    }
    std::cout << out.dump(-1, ' ', false, Json::error_handler_t::replace)
              << "\n";
  }
  return 0;
}
