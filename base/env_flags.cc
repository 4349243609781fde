#include "base/env_flags.h"

#include <cstdlib>
#include <string>

#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace spikeserve {

absl::Status ApplyEnvironmentFlags(absl::string_view prefix) {
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // Only our own flags: not Abseil's (--flagfile) nor gRPC's.
    if (!absl::StrContains(flag->Filename(), "server/")) continue;
    const std::string var =
        absl::StrCat(prefix, absl::AsciiStrToUpper(std::string(name)));
    const char* value = std::getenv(var.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat(var, "=\"", value, "\": ", error));
    }
  }
  return absl::OkStatus();
}

}  // namespace spikeserve
