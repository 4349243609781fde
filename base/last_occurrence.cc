#include "base/last_occurrence.h"

#include <vector>

namespace spikeserve {

size_t LastOccurrence(absl::string_view text, absl::string_view pattern) {
  const size_t m = pattern.size(), n = text.size();
  if (m == 0 || m > n) return absl::string_view::npos;
  // p(i): pattern read backwards, r(i): text read backwards.
  auto p = [&](size_t i) { return pattern[m - 1 - i]; };
  auto r = [&](size_t i) { return text[n - 1 - i]; };
  // fail[i]: length of the longest proper border of p(0..i).
  std::vector<size_t> fail(m, 0);
  for (size_t i = 1, k = 0; i < m; ++i) {
    while (k > 0 && p(i) != p(k)) k = fail[k - 1];
    if (p(i) == p(k)) ++k;
    fail[i] = k;
  }
  for (size_t i = 0, k = 0; i < n; ++i) {
    while (k > 0 && r(i) != p(k)) k = fail[k - 1];
    if (r(i) == p(k)) ++k;
    // The reversed pattern ends at reversed position i: it starts at
    // n - 1 - i in `text`.
    if (k == m) return n - 1 - i;
  }
  return absl::string_view::npos;
}

}  // namespace spikeserve
