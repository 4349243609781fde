#include "runtime/serving/context_budget.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace spikeserve {

int ContextBudget::PrefixBlocks() const {
  return (prefix_tokens + block_tokens - 1) / block_tokens;
}

int ContextBudget::BlocksFor(int real_tokens) const {
  return real_tokens <= 0 ? 0 : (real_tokens + block_tokens - 1) / block_tokens;
}

int ContextBudget::MaxTokens() const {
  if (block_tokens < 1) return 0;
  const int by_model = model_context - prefix_tokens;
  const int by_pool = (kv_blocks - PrefixBlocks()) * block_tokens;
  return std::max(0, std::min(by_model, by_pool));
}

absl::Status ContextBudget::CheckUsable() const {
  if (block_tokens < 1 || kv_blocks < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the KV pool needs --kv_blocks >= 1 and --block_tokens ",
                     ">= 1 (got ", kv_blocks, " and ", block_tokens, ")"));
  }
  if (model_context - prefix_tokens < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the QFeP prefix of ", prefix_tokens,
        " tokens leaves less than 2 positions (a one-token prompt and one new "
        "token) of the model's context of ",
        model_context));
  }
  if ((kv_blocks - PrefixBlocks()) * block_tokens < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv_blocks ", kv_blocks, " leaves less than 2 positions after the ",
        PrefixBlocks(), " blocks of the QFeP prefix"));
  }
  return absl::OkStatus();
}

}  // namespace spikeserve
