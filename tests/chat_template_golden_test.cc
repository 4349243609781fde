// Every chat template in tests/data/chat-templates/ (17 real models'
// templates, from llama.cpp) rendered by runtime/text/jinja.h for every
// conversation of tests/data/chat_template_goldens.json, compared byte for
// byte with Python's jinja2 (tests/golden/make_template_goldens.py). A
// render that raised in jinja2 must fail here too: raise_exception with
// exactly its message, anything else (an undefined value used, a type
// error) with some error.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/text/jinja.h"
#include "server/chat/json_to_jinja.h"

namespace spikeserve {
namespace {

using Json = nlohmann::ordered_json;  // key order matters (Python dicts)

std::string DataPath(const std::string& name) {
  return std::string(SPIKESERVE_SOURCE_DIR) + "/tests/data/" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(ChatTemplateGolden, EveryTemplateMatchesJinja2) {
  const Json goldens =
      Json::parse(ReadFile(DataPath("chat_template_goldens.json")));
  ASSERT_TRUE(goldens.contains("templates"));
  std::map<std::string, Json> cases;
  for (const Json& c : goldens["cases"]) cases[c["name"]] = c["context"];

  ChatTemplate::RenderOptions options;
  options.now = absl::FromCivil(absl::CivilSecond(2024, 7, 26, 10, 30, 0),
                                absl::UTCTimeZone());

  int templates = 0, identical = 0, errors_matched = 0, total = 0;
  for (const Json& t : goldens["templates"]) {
    const std::string file = t["file"];
    SCOPED_TRACE(file);
    ++templates;
    absl::StatusOr<ChatTemplate> tmpl =
        ChatTemplate::Parse(ReadFile(DataPath("chat-templates/" + file)));
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    int template_identical = 0;
    for (const Json& r : t["results"]) {
      const std::string case_name = r["case"];
      SCOPED_TRACE(case_name);
      ++total;
      Json context = goldens["common_context"];
      for (const auto& [k, v] : t["extra_context"].items()) context[k] = v;
      for (const auto& [k, v] : cases.at(case_name).items()) context[k] = v;
      absl::StatusOr<std::string> got =
          tmpl->Render(JsonToJinja(context), options);
      if (r.contains("output")) {
        EXPECT_TRUE(got.ok()) << got.status();
        if (!got.ok()) continue;
        const std::string want = r["output"];
        EXPECT_EQ(*got, want);
        if (*got == want) ++template_identical;
        continue;
      }
      const Json& error = r["error"];
      EXPECT_FALSE(got.ok()) << "jinja2 raised " << error["type"] << ": "
                             << error["message"] << ", we rendered:\n"
                             << *got;
      if (got.ok()) continue;
      EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument)
          << got.status();
      if (error["raised"].get<bool>()) {
        EXPECT_TRUE(IsRaisedByTemplate(got.status())) << got.status();
        EXPECT_EQ(got.status().message(), error["message"].get<std::string>());
      } else {
        EXPECT_FALSE(IsRaisedByTemplate(got.status())) << got.status();
      }
      ++errors_matched;
    }
    identical += template_identical;
    // The acceptance bar: at least 8 conversations per template render.
    EXPECT_GE(template_identical, 8);
  }
  std::printf(
      "chat template goldens: %d templates, %d cases, %d byte-identical "
      "renders, %d errors as in jinja2\n",
      templates, total, identical, errors_matched);
  EXPECT_EQ(templates, 17);
}

// One parsed template rendered from several threads at once gives every
// thread the golden text (Render keeps its state per call).
TEST(ChatTemplateGolden, ConcurrentRendersOfOneTemplate) {
  const Json goldens =
      Json::parse(ReadFile(DataPath("chat_template_goldens.json")));
  std::map<std::string, Json> cases;
  for (const Json& c : goldens["cases"]) cases[c["name"]] = c["context"];
  int found = 0;
  for (const Json& t : goldens["templates"]) {
    if (t["file"] != "meetkai-functionary-medium-v3.2.jinja") continue;
    ++found;
    absl::StatusOr<ChatTemplate> tmpl = ChatTemplate::Parse(
        ReadFile(DataPath("chat-templates/" + t["file"].get<std::string>())));
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    std::vector<std::pair<JinjaValue, std::string>> work;
    for (const Json& r : t["results"]) {
      if (!r.contains("output")) continue;
      Json context = goldens["common_context"];
      for (const auto& [k, v] : cases.at(r["case"]).items()) context[k] = v;
      work.emplace_back(JsonToJinja(context), r["output"]);
    }
    ASSERT_GE(work.size(), 3u) << "no golden outputs to render";
    std::vector<int> mismatches(4, 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] {
        for (int round = 0; round < 20; ++round) {
          for (const auto& [context, want] : work) {
            absl::StatusOr<std::string> got = tmpl->Render(context);
            if (!got.ok() || *got != want) ++mismatches[i];
          }
        }
      });
    }
    for (std::thread& th : threads) th.join();
    for (int m : mismatches) EXPECT_EQ(m, 0);
  }
  EXPECT_EQ(found, 1) << "the template is not among the goldens";
}

// The goldens cover every template file shipped in tests/data.
TEST(ChatTemplateGolden, GoldensCoverEveryTemplateFile) {
  const Json goldens =
      Json::parse(ReadFile(DataPath("chat_template_goldens.json")));
  std::set<std::string> in_goldens;
  for (const Json& t : goldens["templates"]) in_goldens.insert(t["file"]);
  int files = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(DataPath("chat-templates"))) {
    if (entry.path().extension() != ".jinja") continue;
    ++files;
    EXPECT_TRUE(in_goldens.count(entry.path().filename().string()))
        << entry.path();
  }
  EXPECT_EQ(files, 17);
}

}  // namespace
}  // namespace spikeserve
