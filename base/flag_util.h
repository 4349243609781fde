// Shared command-line helpers for the tools.
#ifndef SPIKESERVE_BASE_FLAG_UTIL_H_
#define SPIKESERVE_BASE_FLAG_UTIL_H_

#include <string>
#include <vector>

#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace spikeserve {

// Abseil flags are spelled with underscores (--max_new_tokens); accept the
// dashed spelling too (--max-new-tokens) by rewriting flag names in place.
// Values (after '=') and positional arguments are left alone.
inline void AcceptDashedFlags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* a = argv[i];
    if (a[0] != '-' || a[1] != '-') continue;
    if (a[2] == '\0') break;  // "--" ends flags
    for (char* p = a + 2; *p != '\0' && *p != '='; ++p) {
      if (*p == '-') *p = '_';
    }
  }
}

// --help lists the flags of the program's own main file. Abseil's default
// looks for a file named after the binary (spikeserve-eval -> eval.cc?),
// which ours (tools/eval_main.cc, server/main.cc) never match, so --help
// printed "No flags matched". Call before ParseCommandLine.
inline void ShowOwnFlagsInHelp() {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "_main.cc") ||
           absl::EndsWith(file, "server/main.cc");
  };
  absl::SetFlagsUsageConfig(config);
}

}  // namespace spikeserve

#endif  // SPIKESERVE_BASE_FLAG_UTIL_H_
