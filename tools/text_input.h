// Reading a text file and cutting its tokens into windows, for the
// calibrate and eval tools.
#ifndef SPIKESERVE_TOOLS_TEXT_INPUT_H_
#define SPIKESERVE_TOOLS_TEXT_INPUT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/text_file.h"
#include "runtime/text/tokenizer.h"

namespace spikeserve {

// Tokenizes `text` as plain text (special-token strings are not parsed,
// no BOS) and cuts it into non-overlapping windows of `window` tokens, at
// most `max_windows` (0 = all). FailedPrecondition when no full window fits.
absl::StatusOr<std::vector<std::vector<int32_t>>> TextWindows(
    const Tokenizer& tokenizer, const std::string& text, int window,
    int max_windows, int64_t* total_tokens = nullptr);

}  // namespace spikeserve

#endif  // SPIKESERVE_TOOLS_TEXT_INPUT_H_
