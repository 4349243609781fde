// Minimal structured-enough logging to stderr for the server process
// (Debian's Abseil 20220623 predates absl/log).
#ifndef SPIKESERVE_BASE_LOG_H_
#define SPIKESERVE_BASE_LOG_H_

#include "absl/strings/string_view.h"

namespace spikeserve {

// "2026-11-22T10:00:00.123Z spikeserve: <message>\n", one write per line.
void LogInfo(absl::string_view message);
void LogWarning(absl::string_view message);
void LogError(absl::string_view message);

}  // namespace spikeserve

#endif  // SPIKESERVE_BASE_LOG_H_
