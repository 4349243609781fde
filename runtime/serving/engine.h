// The engine: one thread that owns the model's KV pool and runs every
// request, with continuous batching (each step: one token for every decoding
// sequence plus prompt chunks of prefilling ones, within a token budget),
// the QFeP prefix held in pinned blocks that every sequence references, and
// automatic prefix caching of full prompt blocks (chained hashes, LRU).
// When the pool runs dry mid-decode the newest sequence is preempted and
// later recomputed.
//
// Thread-safety: Submit, Abort, Stats and Shutdown may be called from any
// thread. Update callbacks run on the engine thread, in order, and must
// return quickly (no blocking I/O); they may call Abort.
#ifndef SPIKESERVE_RUNTIME_SERVING_ENGINE_H_
#define SPIKESERVE_RUNTIME_SERVING_ENGINE_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/model/forward_observer.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/model.h"
#include "runtime/model/shared_prefix.h"
#include "runtime/serving/context_budget.h"
#include "runtime/serving/sampler.h"
#include "runtime/text/tokenizer.h"

namespace spikeserve {

enum class FinishReason {
  kUnspecified = 0,
  kLength,        // max_new_tokens reached
  kEosToken,      // an end-of-generation or stop token id
  kStopSequence,  // a stop string appeared (it is not returned)
  kAborted,       // Abort, client cancellation or shutdown
  kDeadline,      // the request's deadline passed
};
inline constexpr int kNumFinishReasons = int(FinishReason::kDeadline) + 1;
const char* FinishReasonName(FinishReason r);

struct StoppingParams {
  int max_new_tokens = 128;
  std::vector<std::string> stop_sequences;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
};

// A validated request in native types (the server converts and validates
// the proto; the engine only re-checks what it must to stay safe).
struct GenerationRequest {
  std::string id;
  std::vector<int32_t> prompt;  // real tokens, without the QFeP prefix
  SamplingParams sampling;
  StoppingParams stopping;
  int top_n = 0;  // logprobs of the n most likely tokens per step
  absl::Time deadline = absl::InfiniteFuture();
};

struct GeneratedToken {
  int32_t id = -1;
  float logprob = 0;
  std::vector<SampledToken> top;  // top_n alternatives
};

// What a request's callback receives: text and tokens since the previous
// update, and, once, the end.
struct GenerationUpdate {
  std::string text;  // valid UTF-8 (held back at a split character or at
                     // a possible stop-string start)
  std::vector<GeneratedToken> tokens;
  bool finished = false;
  FinishReason finish_reason = FinishReason::kUnspecified;
  absl::Status status;  // not OK when the request failed
  int prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  double queue_seconds = 0, ttft_seconds = 0, total_seconds = 0;
};
using UpdateCallback = std::function<void(const GenerationUpdate&)>;

struct EngineOptions {
  int kv_blocks = 1024;         // pool size, blocks
  int block_tokens = 16;        // tokens per block
  int max_batch_tokens = 512;   // tokens per step (chunked prefill budget)
  int max_running = 16;         // sequences in the batch at once
  int max_waiting = 64;         // queue bound; beyond it Submit refuses
  std::vector<int32_t> prefix;  // QFeP prefix (empty: none)
  bool prefix_caching = true;
  // The prefix cache's block hash (parent hash, the block's tokens); null
  // = FNV-1a. Tests give one that collides on purpose: a cached block is
  // reused only when its tokens and its parent entry (the one matched
  // before it, not just the parent's hash) are the request's, so a
  // collision costs a miss, never another client's KV.
  uint64_t (*block_hash)(uint64_t parent, const int32_t* tokens,
                         int n) = nullptr;
  int threads = 0;  // OpenMP threads of the model (0 = OpenMP's default)
  ForwardObserver* observer = nullptr;  // per-layer statistics
};

struct EngineStats {
  int running = 0, waiting = 0;
  int kv_blocks = 0;               // pool size
  int kv_blocks_used = 0;          // referenced by anything
  int kv_blocks_cached = 0;        // held only by the prefix cache
  std::vector<int> prefix_blocks;  // the QFeP prefix's pinned blocks
  // Their reference counts: 1 (the pin) + every sequence attached to them.
  std::vector<int> prefix_block_refs;
  int64_t prefix_cache_query_tokens = 0, prefix_cache_hit_tokens = 0;
  int64_t steps = 0, preemptions = 0;
  int aborts_pending = 0;  // Abort calls the engine thread has not yet seen
};

class Engine {
 public:
  // Computes the QFeP prefix (FP32) and starts the engine thread. Call it
  // (and load the model) on a thread that does not run the model later,
  // ideally through RunOnTransientThread (transient_thread.h): an OpenMP
  // pool left on the caller's thread slows every decode step.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const Model* model,
                                                        const Tokenizer* tok,
                                                        EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. ResourceExhausted when the queue is full,
  // InvalidArgument for an id in flight or a prompt that is empty or, with
  // max_new_tokens, does not fit context_budget().MaxTokens(), Unavailable
  // after Shutdown.
  absl::Status Submit(GenerationRequest request, UpdateCallback callback);
  // Finishes the request with kAborted at the next step. False (and no-op)
  // when no request with this id is in flight.
  bool Abort(const std::string& id);
  EngineStats Stats() const;
  // What one request can hold (fixed at Create).
  const ContextBudget& context_budget() const { return budget_; }
  // Aborts everything in flight and stops the thread. Idempotent.
  void Shutdown();

 private:
  struct Sequence;
  explicit Engine(const Model* model, const Tokenizer* tok, EngineOptions o);
  void Loop();
  bool Step();  // false when there was nothing to do
  void Admit();
  void Finish(Sequence& s, FinishReason reason, absl::Status status = {});
  void Emit(Sequence& s, std::vector<GeneratedToken> tokens, bool finished,
            FinishReason reason, absl::Status status);
  void OnToken(Sequence& s, const float* logits);
  bool ReserveOrEvict(Sequence& s, int total_tokens);
  void Preempt(Sequence& s);
  uint64_t Hash(uint64_t parent, const int32_t* tokens, int n) const;
  // The prefix-cache blocks that start `s`'s tokens, attached to its KV;
  // returns their tokens, and the tokens looked up in `queried`.
  int CacheLookup(Sequence& s, int* queried);
  void CacheInsert(Sequence& s);
  bool EvictOneCachedBlock();
  int EvictableBlocks() const;  // cached blocks no sequence holds
  void PublishStats();

  const Model* model_;
  const Tokenizer* tok_;
  EngineOptions options_;
  ContextBudget budget_;
  std::unique_ptr<KvPool> pool_;
  std::unique_ptr<SharedPrefix> prefix_;

  // Shared with other threads, under mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> incoming_;
  absl::flat_hash_set<std::string> in_flight_;
  absl::flat_hash_set<std::string> aborts_;
  bool stop_ = false;
  EngineStats stats_;

  // Engine thread only.
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  struct CacheEntry {
    int block;
    // This entry, and the cached entry before it (0: the first), by serial
    // numbers never reused: block numbers are (a freed block is the next
    // one handed out), so a parent evicted and its block refilled with
    // another prefix must not pass for the one this block followed. The
    // parent's serial also fixes its hash (one entry per serial).
    uint64_t serial, parent_serial;
    std::vector<int32_t> tokens;
    std::list<uint64_t>::iterator lru;
  };
  absl::flat_hash_map<uint64_t, CacheEntry> cache_;
  uint64_t next_serial_ = 1;
  std::list<uint64_t> lru_;  // most recent first
  int64_t steps_ = 0, preemptions_ = 0, cache_queries_ = 0, cache_hits_ = 0;
  std::vector<float> logits_;

  std::thread thread_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_SERVING_ENGINE_H_
