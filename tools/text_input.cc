#include "tools/text_input.h"

#include "absl/strings/str_cat.h"
#include "runtime/quant/evaluation.h"

namespace spikeserve {

absl::StatusOr<std::vector<std::vector<int32_t>>> TextWindows(
    const Tokenizer& tokenizer, const std::string& text, int window,
    int max_windows, int64_t* total_tokens) {
  if (window < 2) return absl::InvalidArgumentError("--window must be >= 2");
  absl::StatusOr<std::vector<int32_t>> ids =
      tokenizer.Encode(text, /*add_special=*/false, /*parse_special=*/false);
  if (!ids.ok()) return ids.status();
  if (total_tokens) *total_tokens = int64_t(ids->size());
  std::vector<std::vector<int32_t>> w = MakeWindows(*ids, window, max_windows);
  if (w.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "text has ", ids->size(), " tokens, fewer than half a window of ",
        window, " (a last window shorter than half is dropped)"));
  }
  return w;
}

}  // namespace spikeserve
