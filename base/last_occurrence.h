// Where a string last occurs in another, in linear time.
//
// absl::string_view::rfind (this build's own string_view) and
// std::string::rfind compare at every start position, O(n·m): a client's
// 1 MB final message in a 3 MB rendered chat (continue_final_message) that
// almost matches everywhere took minutes of a serving thread.
#ifndef SPIKESERVE_BASE_LAST_OCCURRENCE_H_
#define SPIKESERVE_BASE_LAST_OCCURRENCE_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace spikeserve {

// The start of the last occurrence of `pattern` in `text`, or
// absl::string_view::npos (also for an empty pattern). Knuth-Morris-Pratt
// over both strings read backwards: O(|text| + |pattern|) time, one
// |pattern|-sized table.
size_t LastOccurrence(absl::string_view text, absl::string_view pattern);

}  // namespace spikeserve

#endif  // SPIKESERVE_BASE_LAST_OCCURRENCE_H_
