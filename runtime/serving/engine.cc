#include "runtime/serving/engine.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace spikeserve {
namespace {

// Chained hash of a full block: FNV-1a over the parent hash and token ids.
uint64_t BlockHash(uint64_t parent, const int32_t* tokens, int n) {
  uint64_t h = 0xcbf29ce484222325ull ^ parent;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xFF;
      h *= 0x100000001b3ull;
    }
  };
  mix(parent);
  for (int i = 0; i < n; ++i) mix(uint64_t(uint32_t(tokens[i])));
  return h;
}

// Wall-clock intervals (the deadline is wall time too), never negative: a
// clock stepped back (NTP) made the latency histograms' sums go down,
// which rate() reads as a counter reset.
double Seconds(absl::Time a, absl::Time b) {
  return std::max(0.0, absl::ToDoubleSeconds(b - a));
}

}  // namespace

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kUnspecified:
      return "unspecified";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kEosToken:
      return "eos_token";
    case FinishReason::kStopSequence:
      return "stop_sequence";
    case FinishReason::kAborted:
      return "aborted";
    case FinishReason::kDeadline:
      return "deadline";
  }
  return "?";
}

struct Engine::Sequence {
  GenerationRequest req;
  UpdateCallback cb;
  std::unique_ptr<SequenceKv> kv;
  std::vector<int32_t> tokens;  // prompt + generated (real tokens)
  int prompt_len = 0;
  int computed = 0;  // real tokens whose K/V are in `kv`
  int generated = 0;
  int cached = 0;  // tokens reused from the prefix cache at this admission
  // Prompt tokens reused at the first admission: what usage and the cache
  // counters report (a preempted sequence looks up again when it returns,
  // its generated tokens included, and finds its own prompt blocks).
  int prompt_cached = 0;
  bool cache_inserted = false;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamingDetokenizer> detok;
  std::string text;    // generated text so far (stop-string matching)
  size_t emitted = 0;  // bytes of `text` already sent
  absl::Time arrival, first_token = absl::InfinitePast();
  absl::Time admitted = absl::InfinitePast();  // first admission to a batch
  bool done = false;
};

Engine::Engine(const Model* model, const Tokenizer* tok, EngineOptions o)
    : model_(model), tok_(tok), options_(std::move(o)) {}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const Model* model,
                                                       const Tokenizer* tok,
                                                       EngineOptions options) {
  if (options.max_batch_tokens < 1 || options.max_running < 1 ||
      options.max_waiting < 0) {
    return absl::InvalidArgumentError(
        "engine: max_batch_tokens and max_running must be >= 1");
  }
  auto e = std::unique_ptr<Engine>(new Engine(model, tok, std::move(options)));
  e->budget_ = ContextBudget{model->config().context_length,
                             int(e->options_.prefix.size()),
                             e->options_.kv_blocks, e->options_.block_tokens};
  if (absl::Status s = e->budget_.CheckUsable(); !s.ok()) return s;
  auto pool = model->NewKvPool(e->options_.kv_blocks, e->options_.block_tokens);
  if (!pool.ok()) return pool.status();
  e->pool_ = *std::move(pool);
  if (!e->options_.prefix.empty()) {
    auto p = SharedPrefix::Compute(*model, e->pool_.get(), e->options_.prefix);
    if (!p.ok()) return p.status();
    e->prefix_ = *std::move(p);
  }
  e->PublishStats();
  e->thread_ = std::thread([raw = e.get()] { raw->Loop(); });
  return e;
}

Engine::~Engine() { Shutdown(); }

void Engine::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
    thread_.join();
  }
}

absl::Status Engine::Submit(GenerationRequest request, UpdateCallback cb) {
  if (request.prompt.empty()) {
    return absl::InvalidArgumentError("prompt is empty");
  }
  // The same rule as request validation (context_budget.h); the server
  // never sends what fails here.
  const int max_tokens = budget_.MaxTokens();
  const int total =
      int(request.prompt.size()) + std::max(1, request.stopping.max_new_tokens);
  if (total > max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", request.prompt.size(), " tokens) + max_new_tokens (",
        request.stopping.max_new_tokens, ") exceeds the context of ",
        max_tokens, " tokens"));
  }
  auto s = std::make_unique<Sequence>();
  s->tokens = request.prompt;
  s->prompt_len = int(request.prompt.size());
  s->sampler = std::make_unique<Sampler>(request.sampling, request.prompt);
  s->detok =
      std::make_unique<StreamingDetokenizer>(tok_, /*render_special=*/false);
  s->arrival = absl::Now();
  s->req = std::move(request);
  s->cb = std::move(cb);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return absl::UnavailableError("engine is shutting down");
    if (!s->req.id.empty() && in_flight_.contains(s->req.id)) {
      // INVALID_ARGUMENT (not ALREADY_EXISTS): the field is wrong for the
      // current state, and the message names it like every other bad field.
      return absl::InvalidArgumentError(
          absl::StrCat("request_id: '", s->req.id,
                       "' is already in flight; ids must be unique among "
                       "requests in flight"));
    }
    // stats_.waiting counts the engine's queue plus incoming_ (published
    // by the engine thread, incremented here between publications).
    if (stats_.waiting >= options_.max_waiting) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "request queue is full (", options_.max_waiting, " waiting)"));
    }
    if (!s->req.id.empty()) in_flight_.insert(s->req.id);
    ++stats_.waiting;  // counted until the engine thread takes it over
    incoming_.push_back(std::move(s));
  }
  cv_.notify_one();
  return absl::OkStatus();
}

bool Engine::Abort(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!in_flight_.contains(id)) return false;
    aborts_.insert(id);
  }
  cv_.notify_one();
  return true;
}

EngineStats Engine::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats s = stats_;
  s.aborts_pending = int(aborts_.size());
  return s;
}

void Engine::PublishStats() {
  EngineStats s;
  for (const auto& q : running_) s.running += !q->done;
  for (const auto& q : waiting_) s.waiting += !q->done;
  s.kv_blocks = pool_->num_blocks();
  s.kv_blocks_used = pool_->used_blocks();
  for (const auto& [h, e] : cache_) {
    if (pool_->refcount(e.block) == 1) ++s.kv_blocks_cached;
  }
  if (prefix_) {
    s.prefix_blocks = prefix_->blocks();
    for (int b : s.prefix_blocks) {
      s.prefix_block_refs.push_back(pool_->refcount(b));
    }
  }
  s.prefix_cache_query_tokens = cache_queries_;
  s.prefix_cache_hit_tokens = cache_hits_;
  s.steps = steps_;
  s.preemptions = preemptions_;
  std::lock_guard<std::mutex> lock(mu_);
  s.waiting += int(incoming_.size());
  stats_ = std::move(s);
}

void Engine::Loop() {
  // OpenMP's thread count is per thread: set it where the model runs.
  if (options_.threads > 0) omp_set_num_threads(options_.threads);
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stop_) break;
    }
    if (!Step()) {
      PublishStats();
      std::unique_lock<std::mutex> lock(mu_);
      // Wake for new work, aborts or shutdown; poll deadlines of waiting
      // requests every 20 ms.
      cv_.wait_for(lock, std::chrono::milliseconds(20), [&] {
        return stop_ || !incoming_.empty() || !aborts_.empty();
      });
    }
  }
  // Shutdown: every request still in flight ends as aborted.
  for (auto& s : running_) Finish(*s, FinishReason::kAborted);
  for (auto& s : waiting_) Finish(*s, FinishReason::kAborted);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& s : incoming_) waiting_.push_back(std::move(s));
    incoming_.clear();
  }
  for (auto& s : waiting_) {
    if (!s->done) Finish(*s, FinishReason::kAborted);
  }
  running_.clear();
  waiting_.clear();
  PublishStats();
}

void Engine::Emit(Sequence& s, std::vector<GeneratedToken> tokens,
                  bool finished, FinishReason reason, absl::Status status) {
  GenerationUpdate u;
  u.tokens = std::move(tokens);
  u.finished = finished;
  u.finish_reason = reason;
  u.status = std::move(status);
  // Text: everything safe to send. Hold back a tail that could still
  // become a stop string, unless finished.
  size_t safe = s.text.size();
  if (!finished) {
    for (const std::string& stop : s.req.stopping.stop_sequences) {
      if (stop.empty()) continue;
      for (size_t k = std::min(stop.size() - 1, s.text.size()); k > 0; --k) {
        if (s.text.compare(s.text.size() - k, k, stop, 0, k) == 0) {
          safe = std::min(safe, s.text.size() - k);
          break;
        }
      }
    }
  }
  if (safe > s.emitted) {
    u.text = s.text.substr(s.emitted, safe - s.emitted);
    s.emitted = safe;
  }
  const absl::Time now = absl::Now();
  u.prompt_tokens = s.prompt_len;
  u.completion_tokens = s.generated;
  u.cached_tokens = s.prompt_cached;
  if (s.first_token != absl::InfinitePast()) {
    u.ttft_seconds = Seconds(s.arrival, s.first_token);
  }
  u.queue_seconds =
      Seconds(s.arrival, s.admitted == absl::InfinitePast() ? now : s.admitted);
  u.total_seconds = Seconds(s.arrival, now);
  if (s.cb && (finished || !u.text.empty() || !u.tokens.empty())) s.cb(u);
}

void Engine::Finish(Sequence& s, FinishReason reason, absl::Status status) {
  if (s.done) return;
  s.done = true;
  if (reason != FinishReason::kStopSequence) {
    s.text += s.detok->Flush();
  }
  // Release the blocks and publish before the final update, so that a
  // client that sees the end also sees the KV usage without it.
  s.kv.reset();
  PublishStats();
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(s.req.id);
    aborts_.erase(s.req.id);
  }
  Emit(s, {}, true, reason, std::move(status));
}

void Engine::OnToken(Sequence& s, const float* logits) {
  const int vocab = model_->config().vocab_size;
  // A NaN or infinite logit (weights or a kernel gone wrong) has no
  // meaningful sample: NaN maxima left the sampler no candidate, and it
  // read outside its list. This request ends with an error naming it; the
  // others in the batch go on.
  if (const float* bad = std::find_if_not(
          logits, logits + vocab, [](float x) { return std::isfinite(x); });
      bad != logits + vocab) {
    Finish(s, FinishReason::kAborted,
           absl::InternalError(absl::StrCat(
               "the model computed a non-finite logit (", *bad, " for token ",
               bad - logits, ") after ", s.generated,
               " generated tokens: its weights or a kernel are broken")));
    return;
  }
  GeneratedToken t;
  const SampledToken st =
      s.sampler->Sample(absl::MakeConstSpan(logits, vocab), s.req.top_n,
                        s.req.top_n > 0 ? &t.top : nullptr);
  t.id = st.id;
  t.logprob = st.logprob;
  if (s.first_token == absl::InfinitePast()) s.first_token = absl::Now();
  ++s.generated;
  s.tokens.push_back(t.id);
  const StoppingParams& stop = s.req.stopping;
  const bool stop_id =
      std::find(stop.stop_token_ids.begin(), stop.stop_token_ids.end(), t.id) !=
      stop.stop_token_ids.end();
  if (stop_id || (!stop.ignore_eos && tok_->IsEndOfGeneration(t.id))) {
    Emit(s, {t}, false, FinishReason::kUnspecified, {});
    Finish(s, FinishReason::kEosToken);
    return;
  }
  absl::StatusOr<std::string> piece = s.detok->Push(t.id);
  if (piece.ok()) s.text += *piece;
  for (const std::string& seq : stop.stop_sequences) {
    if (seq.empty()) continue;
    const size_t at =
        s.text.find(seq, s.emitted > seq.size() ? s.emitted - seq.size() : 0);
    if (at != std::string::npos) {
      s.text.resize(at);  // the stop string is not returned
      Emit(s, {t}, false, FinishReason::kUnspecified, {});
      Finish(s, FinishReason::kStopSequence);
      return;
    }
  }
  if (s.generated >= stop.max_new_tokens) {
    Emit(s, {t}, false, FinishReason::kUnspecified, {});
    Finish(s, FinishReason::kLength);
    return;
  }
  Emit(s, {t}, false, FinishReason::kUnspecified, {});
}

bool Engine::EvictOneCachedBlock() {
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
    auto e = cache_.find(*it);
    if (pool_->refcount(e->second.block) != 1) continue;  // in use
    pool_->Unref(e->second.block);
    lru_.erase(std::next(it).base());
    cache_.erase(e);
    return true;
  }
  return false;
}

int Engine::EvictableBlocks() const {
  int n = 0;
  for (const auto& [h, e] : cache_) n += pool_->refcount(e.block) == 1;
  return n;
}

bool Engine::ReserveOrEvict(Sequence& s, int total_tokens) {
  const int prefix = prefix_ ? prefix_->length() : 0;
  const int missing = s.kv->MissingBlocks(prefix + total_tokens);
  if (missing == 0) return true;
  // Evict only when that makes room: a queue head that cannot fit yet
  // would otherwise empty the prefix cache at every step it waits.
  if (missing > pool_->free_blocks() &&
      missing > pool_->free_blocks() + EvictableBlocks()) {
    return false;
  }
  while (!s.kv->Reserve(prefix + total_tokens).ok()) {
    if (!EvictOneCachedBlock()) return false;
  }
  return true;
}

void Engine::Preempt(Sequence& s) {
  // Recompute later: drop the KV, keep prompt + generated tokens, sampler
  // and text; the sequence re-enters the queue first.
  s.kv.reset();
  s.computed = 0;
  s.cached = 0;
  ++preemptions_;
}

uint64_t Engine::Hash(uint64_t parent, const int32_t* tokens, int n) const {
  return options_.block_hash != nullptr ? options_.block_hash(parent, tokens, n)
                                        : BlockHash(parent, tokens, n);
}

int Engine::CacheLookup(Sequence& s, int* queried) {
  *queried = 0;
  if (!options_.prefix_caching) return 0;
  const int bt = options_.block_tokens;
  // Leave at least one token to compute: its logits start the decode.
  const int usable = (int(s.tokens.size()) - 1) / bt;
  *queried = usable * bt;
  uint64_t parent = 0, parent_serial = 0;
  std::vector<int> blocks;
  for (int i = 0; i < usable; ++i) {
    const int32_t* t = &s.tokens[size_t(i) * bt];
    const uint64_t h = Hash(parent, t, bt);
    auto it = cache_.find(h);
    // The block's KV holds its whole prefix: its tokens and the very entry
    // matched before it must be ours (a parent hash alone can collide).
    if (it == cache_.end() || it->second.parent_serial != parent_serial ||
        !std::equal(t, t + bt, it->second.tokens.begin())) {
      break;
    }
    blocks.push_back(it->second.block);
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    parent = h;
    parent_serial = it->second.serial;
  }
  if (blocks.empty()) return 0;
  if (!s.kv->AppendSharedBlocks(blocks).ok()) return 0;
  return int(blocks.size()) * bt;
}

void Engine::CacheInsert(Sequence& s) {
  if (!options_.prefix_caching || s.cache_inserted) return;
  s.cache_inserted = true;
  const int bt = options_.block_tokens;
  const int full = s.prompt_len / bt;
  uint64_t parent = 0, parent_serial = 0;
  for (int i = 0; i < full && i < int(s.kv->own_blocks().size()); ++i) {
    const int32_t* t = &s.tokens[size_t(i) * bt];
    const uint64_t h = Hash(parent, t, bt);
    auto it = cache_.find(h);
    if (it == cache_.end()) {
      const int block = s.kv->own_blocks()[i];
      pool_->Ref(block);
      lru_.push_front(h);
      const uint64_t serial = next_serial_++;
      cache_[h] = CacheEntry{block, serial, parent_serial,
                             std::vector<int32_t>(t, t + bt), lru_.begin()};
      parent_serial = serial;
    } else if (it->second.parent_serial == parent_serial &&
               std::equal(t, t + bt, it->second.tokens.begin())) {
      // The same prefix, already cached.
      parent_serial = it->second.serial;
    } else {
      // Another prefix under this hash: what follows could never be found
      // through it, and must not be found through the other one.
      break;
    }
    parent = h;
  }
}

void Engine::Admit() {
  const int bt = options_.block_tokens;
  while (!waiting_.empty() && int(running_.size()) < options_.max_running) {
    Sequence& s = *waiting_.front();
    s.kv = std::make_unique<SequenceKv>(pool_.get());
    if (prefix_) (void)prefix_->AttachTo(s.kv.get());
    int queried;
    s.cached = CacheLookup(s, &queried);
    s.computed = s.cached;
    // Admit only when the whole remaining prompt plus one block fits, or
    // everything the request can ever hold (context_budget.h), if less.
    const int need =
        std::min(int(s.tokens.size()) + bt,
                 s.prompt_len + std::max(1, s.req.stopping.max_new_tokens));
    if (!ReserveOrEvict(s, need)) {
      s.kv.reset();
      s.computed = s.cached = 0;
      break;  // FIFO: wait for blocks to free up
    }
    // Counted at the first admission only: a head that waits looks up
    // again every step, and a preempted sequence again when it returns.
    // Queue time ends there too (a preempted sequence keeps it).
    if (s.admitted == absl::InfinitePast()) {
      cache_queries_ += queried;
      cache_hits_ += s.cached;
      s.prompt_cached = s.cached;
      s.admitted = absl::Now();
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

bool Engine::Step() {
  // Aborts and deadlines.
  absl::flat_hash_set<std::string> aborts;
  {
    // New requests and aborts under one lock: an Abort that lands before a
    // request it names is taken over would otherwise be dropped with this
    // step's aborts while the request ran on.
    std::lock_guard<std::mutex> lock(mu_);
    aborts.swap(aborts_);
    while (!incoming_.empty()) {
      waiting_.push_back(std::move(incoming_.front()));
      incoming_.pop_front();
    }
  }
  const absl::Time now = absl::Now();
  auto check = [&](std::unique_ptr<Sequence>& s) {
    if (aborts.contains(s->req.id)) {
      Finish(*s, FinishReason::kAborted);
    } else if (now > s->req.deadline) {
      Finish(*s, FinishReason::kDeadline);
    }
  };
  for (auto& s : running_) check(s);
  for (auto& s : waiting_) check(s);
  auto drop_done = [](auto& v) {
    v.erase(std::remove_if(v.begin(), v.end(),
                           [](const auto& s) { return s->done; }),
            v.end());
  };
  drop_done(running_);
  drop_done(waiting_);

  Admit();
  if (running_.empty()) return false;
  // Publish the batch about to run (what a scrape or a test sees during a
  // long step).
  PublishStats();

  // Plan the batch: one token per decoding sequence, then prompt chunks in
  // admission order within the token budget.
  struct Planned {
    Sequence* s;
    int n;
  };
  std::vector<Planned> plan;
  int budget = options_.max_batch_tokens;
  for (auto& s : running_) {
    const int pending = int(s->tokens.size()) - s->computed;
    if (s->computed >= s->prompt_len && pending == 1 && budget > 0) {
      plan.push_back({s.get(), 1});
      --budget;
    }
  }
  for (auto& s : running_) {
    const int pending = int(s->tokens.size()) - s->computed;
    if ((s->computed < s->prompt_len || pending > 1) && budget > 0) {
      const int n = std::min(pending, budget);
      plan.push_back({s.get(), n});
      budget -= n;
    }
  }
  // KV room for every planned entry; preempt the newest sequences when
  // the pool runs dry.
  for (size_t i = 0; i < plan.size(); ++i) {
    Sequence& s = *plan[i].s;
    if (s.kv == nullptr) continue;  // preempted below for an earlier entry
    while (!ReserveOrEvict(s, s.computed + plan[i].n + 1)) {
      Sequence* victim = running_.back().get();
      // Alone, a sequence always fits: Submit checked its worst case.
      if (victim == &s && running_.size() == 1) break;
      Preempt(*victim);
      waiting_.push_front(std::move(running_.back()));
      running_.pop_back();
      if (victim == &s) break;
    }
  }
  // Drop entries of preempted sequences.
  plan.erase(
      std::remove_if(plan.begin(), plan.end(),
                     [](const Planned& p) { return p.s->kv == nullptr; }),
      plan.end());
  if (plan.empty()) return true;

  std::vector<BatchEntry> batch;
  for (const Planned& p : plan) {
    const bool last = p.s->computed + p.n == int(p.s->tokens.size());
    batch.push_back({p.s->kv.get(),
                     absl::MakeConstSpan(&p.s->tokens[p.s->computed], p.n),
                     false, last});
  }
  ForwardOptions fo;
  fo.observer = options_.observer;
  absl::Status st = model_->Forward(batch, &logits_, fo);
  ++steps_;
  if (!st.ok()) {
    for (const Planned& p : plan) Finish(*p.s, FinishReason::kAborted, st);
    drop_done(running_);
    PublishStats();
    return true;
  }
  size_t row = 0;
  for (const Planned& p : plan) {
    Sequence& s = *p.s;
    s.computed += p.n;
    if (s.computed < int(s.tokens.size())) continue;  // mid-prompt chunk
    if (s.computed >= s.prompt_len) CacheInsert(s);
    OnToken(s, &logits_[row * model_->config().vocab_size]);
    ++row;
  }
  drop_done(running_);
  PublishStats();
  return true;
}

}  // namespace spikeserve
