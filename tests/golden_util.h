// Locating the default model and the golden files for tests that need them.
#ifndef SPIKESERVE_TESTS_GOLDEN_UTIL_H_
#define SPIKESERVE_TESTS_GOLDEN_UTIL_H_

#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace spikeserve::testing {

// $SPIKESERVE_MODEL, else models/ in the source tree.
inline std::string DefaultModelPath() {
  const char* env = std::getenv("SPIKESERVE_MODEL");
  return env != nullptr ? env : SPIKESERVE_DEFAULT_MODEL;
}

inline std::string GoldenPath(const std::string& name) {
  return std::string(SPIKESERVE_SOURCE_DIR) + "/tests/golden/" + name;
}

inline bool FileExists(const std::string& path) {
  return std::ifstream(path).good();
}

// Under CI a missing model is a failure (make test fetches it); locally the
// test is skipped with the command that fixes it.
#define SPIKESERVE_REQUIRE_FILE(path)                                   \
  do {                                                                  \
    if (!::spikeserve::testing::FileExists(path)) {                     \
      if (std::getenv("CI") != nullptr) FAIL() << "missing " << (path); \
      GTEST_SKIP() << "missing " << (path) << " (run `make model`)";    \
    }                                                                   \
  } while (0)

inline nlohmann::json ReadJson(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

}  // namespace spikeserve::testing

#endif  // SPIKESERVE_TESTS_GOLDEN_UTIL_H_
