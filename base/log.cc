#include "base/log.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace spikeserve {
namespace {

void Write(absl::string_view level, absl::string_view message) {
  // One record, one line (log collectors split on newlines): embedded line
  // breaks, e.g. a JSON parser's excerpt, become " | ".
  const std::string flat = absl::StrReplaceAll(message, {{"\n", " | "}});
  const std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone()),
                   " spikeserve ", level, ": ", flat, "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace

void LogInfo(absl::string_view message) { Write("INFO", message); }
void LogWarning(absl::string_view message) { Write("WARNING", message); }
void LogError(absl::string_view message) { Write("ERROR", message); }

}  // namespace spikeserve
