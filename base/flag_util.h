// Shared command-line helpers for the tools.
#ifndef SPIKESERVE_BASE_FLAG_UTIL_H_
#define SPIKESERVE_BASE_FLAG_UTIL_H_

#include <string>
#include <vector>

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

}  // namespace spikeserve

#endif  // SPIKESERVE_BASE_FLAG_UTIL_H_
