// What one sequence can hold: the single computation of "context left"
// that request validation, engine admission and GetModelInfo all use
// (design.md: it used to be computed in three places, and they disagreed).
//
// A sequence's positions are the QFeP prefix (P tokens, in ceil(P / B)
// pinned blocks shared by every sequence) followed by its own real tokens
// (prompt + generated) in own blocks of B tokens. Two limits apply to the
// real tokens T = prompt + max_new_tokens:
//   - the model:  P + T <= context_length (positions RoPE was trained on);
//   - the pool:   ceil(T / B) <= kv_blocks - ceil(P / B) (a sequence alone,
//                 with every evictable cached block evicted, must fit).
// The engine never holds more than ceil(T / B) own blocks for a request
// (the last sampled token is never run through the model, which leaves the
// one position of slack the engine reserves ahead of each step).
//
// A plain value, thread-compatible.
#ifndef SPIKESERVE_RUNTIME_SERVING_CONTEXT_BUDGET_H_
#define SPIKESERVE_RUNTIME_SERVING_CONTEXT_BUDGET_H_

#include "absl/status/status.h"

namespace spikeserve {

struct ContextBudget {
  int model_context = 0;  // the model's context_length, positions
  int prefix_tokens = 0;  // QFeP prefix length P
  int kv_blocks = 0;      // KV pool size, blocks
  int block_tokens = 16;  // B, tokens per block

  // Blocks the prefix pins.
  int PrefixBlocks() const;
  // Own blocks of a sequence of `real_tokens` (prompt + generated) tokens.
  int BlocksFor(int real_tokens) const;
  // The most real tokens (prompt + new) one request can have: the context
  // the server advertises. <= 0 when nothing fits.
  int MaxTokens() const;
  // OK when at least a one-token prompt and one new token fit, else
  // InvalidArgument saying which limit is too small (start-up check).
  absl::Status CheckUsable() const;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_SERVING_CONTEXT_BUDGET_H_
