#include "server/serving_metrics.h"

#include <exception>
#include <vector>

#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/text_serializer.h"
#include "server/grpc/grpc_status.h"

namespace spikeserve {
namespace {

// Request-level latencies on a CPU server: 5 ms (a cached short prompt) to
// 10 minutes (long generations of an 8B model at a few tokens a second).
const prometheus::Histogram::BucketBoundaries kRequestBuckets = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
    2.5,   5,    10,    30,   60,  120,  300, 600};
// Time to first token: prefill of up to a few thousand tokens, on models up
// to 8B (about 50 prompt tokens a second on 2 cores: 2048 tokens ~ 40 s).
const prometheus::Histogram::BucketBoundaries kTtftBuckets = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8,
    1.5,   3,    6,     12,   30,  60,  120, 300};
// Inter-token latency: one decode step, 5 ms (small model, one stream) to
// 30 s (an 8B model's step shared with a 512-token prefill chunk takes ~10).
const prometheus::Histogram::BucketBoundaries kItlBuckets = {
    0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
    0.2,   0.5,  1,     2,    5,    10,   30};

prometheus::ClientMetric Value(double v) {
  prometheus::ClientMetric m;
  m.gauge.value = v;
  m.counter.value = v;
  return m;
}

prometheus::MetricFamily Family(const char* name, const char* help,
                                prometheus::MetricType type, double v) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  f.metric.push_back(Value(v));
  return f;
}

}  // namespace

// Engine statistics at scrape time.
class ServingMetrics::EngineCollector final : public prometheus::Collectable {
 public:
  explicit EngineCollector(const std::atomic<const Engine*>* engine)
      : engine_(engine) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    const Engine* e = engine_->load();
    if (e == nullptr) return {};
    const EngineStats s = e->Stats();
    using prometheus::MetricType;
    return {
        Family("spikeserve_requests_running",
               "Generation requests in the running batch", MetricType::Gauge,
               s.running),
        Family("spikeserve_requests_waiting",
               "Generation requests queued for admission", MetricType::Gauge,
               s.waiting),
        // Used = pinned (what a new request cannot get); blocks that only
        // the prefix cache holds are evicted on demand, so they count as
        // cached, not used: an idle server reads ~0 here.
        Family("spikeserve_kv_cache_usage_ratio",
               "Fraction of KV blocks pinned by sequences in flight and the "
               "QFeP prefix (not evictable)",
               MetricType::Gauge,
               s.kv_blocks > 0
                   ? double(s.kv_blocks_used - s.kv_blocks_cached) / s.kv_blocks
                   : 0),
        Family("spikeserve_kv_cache_cached_ratio",
               "Fraction of KV blocks held only by the prefix cache "
               "(evictable: free for new requests)",
               MetricType::Gauge,
               s.kv_blocks > 0 ? double(s.kv_blocks_cached) / s.kv_blocks : 0),
        Family("spikeserve_prefix_cache_queries_total",
               "Prompt tokens looked up in the prefix cache",
               MetricType::Counter, double(s.prefix_cache_query_tokens)),
        Family("spikeserve_prefix_cache_hits_total",
               "Prompt tokens whose KV was reused from the prefix cache",
               MetricType::Counter, double(s.prefix_cache_hit_tokens)),
        Family("spikeserve_engine_steps_total", "Engine steps (batches run)",
               MetricType::Counter, double(s.steps)),
        Family("spikeserve_preemptions_total",
               "Sequences preempted (recomputed later) when KV ran out",
               MetricType::Counter, double(s.preemptions)),
    };
  }

 private:
  const std::atomic<const Engine*>* engine_;
};

ServingMetrics::ServingMetrics()
    : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  requests_ =
      &prometheus::BuildCounter()
           .Name("spikeserve_requests_total")
           .Help(
               "Finished calls by protocol (grpc, http), method or route, "
               "and canonical status code")
           .Register(r);
  duration_ = &prometheus::BuildHistogram()
                   .Name("spikeserve_request_duration_seconds")
                   .Help("Generation request time from arrival to the end")
                   .Register(r)
                   .Add({}, kRequestBuckets);
  queue_ = &prometheus::BuildHistogram()
                .Name("spikeserve_request_queue_seconds")
                .Help(
                    "Generation request time in the queue before its first "
                    "step")
                .Register(r)
                .Add({}, kRequestBuckets);
  ttft_ = &prometheus::BuildHistogram()
               .Name("spikeserve_time_to_first_token_seconds")
               .Help("Time from arrival to the first generated token")
               .Register(r)
               .Add({}, kTtftBuckets);
  itl_ = &prometheus::BuildHistogram()
              .Name("spikeserve_inter_token_latency_seconds")
              .Help("Time between consecutive tokens sent to a client")
              .Register(r)
              .Add({}, kItlBuckets);
  prompt_tokens_ = &prometheus::BuildCounter()
                        .Name("spikeserve_prompt_tokens_total")
                        .Help("Prompt tokens of finished generation requests")
                        .Register(r)
                        .Add({});
  generated_tokens_ = &prometheus::BuildCounter()
                           .Name("spikeserve_generated_tokens_total")
                           .Help("Tokens generated for finished requests")
                           .Register(r)
                           .Add({});
  // Why generations end: a drain's or Abort's cut (aborted) and deadlines
  // are OK calls to the client, with the partial output, so
  // requests_total's codes do not show them.
  auto& generations =
      prometheus::BuildCounter()
          .Name("spikeserve_generations_total")
          .Help(
              "Finished generation requests by finish reason (error: the "
              "request failed)")
          .Register(r);
  for (int i = 0; i < kNumFinishReasons; ++i) {
    generations_[i] = &generations.Add(
        {{"finish_reason", FinishReasonName(FinishReason(i))}});
  }
  generations_[kNumFinishReasons] =
      &generations.Add({{"finish_reason", "error"}});
  build_info_ = &prometheus::BuildGauge()
                     .Name("spikeserve_build_info")
                     .Help("Versions of the server and its kernels (value 1)")
                     .Register(r);
  plan_info_ = &prometheus::BuildGauge()
                    .Name("spikeserve_quant_plan_info")
                    .Help("Quantization settings in use (value 1)")
                    .Register(r);
  engine_collector_ = std::make_shared<EngineCollector>(&engine_);
}

ServingMetrics::~ServingMetrics() {
  // Stop serving scrapes before the collector and registry go away.
  http_.reset();
}

absl::StatusOr<std::unique_ptr<ServingMetrics>> ServingMetrics::Create(
    const std::string& bind, const HttpLimits& limits) {
  std::unique_ptr<ServingMetrics> m(new ServingMetrics());
  if (bind.empty()) return m;
  // "HOST:PORT"; port 0 picks a free one.
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
      MetricsHttpServer::Start(bind, limits,
                               [raw = m.get()] { return raw->Serialize(); });
  if (!http.ok()) return http.status();
  m->http_ = *std::move(http);
  m->port_ = m->http_->port();
  return m;
}

void ServingMetrics::SetInfo(const std::map<std::string, std::string>& build,
                             const std::map<std::string, std::string>& plan) {
  build_info_->Add(prometheus::Labels(build.begin(), build.end())).Set(1);
  plan_info_->Add(prometheus::Labels(plan.begin(), plan.end())).Set(1);
}

void ServingMetrics::OnRpcDone(const char* rpc, grpc::StatusCode code,
                               const char* protocol) {
  prometheus::Counter* c;
  {
    std::lock_guard<std::mutex> lock(requests_mu_);
    auto key =
        std::make_tuple(std::string(protocol), std::string(rpc), int(code));
    auto it = request_series_.find(key);
    if (it == request_series_.end()) {
      c = &requests_->Add({{"protocol", protocol},
                           {"rpc", rpc},
                           {"code", StatusCodeName(code)}});
      request_series_.emplace(key, c);
    } else {
      c = it->second;
    }
  }
  c->Increment();
}

void ServingMetrics::OnTokens(int n, double gap_seconds) {
  if (n <= 0 || gap_seconds < 0) return;
  // Tokens that arrive together share the gap.
  for (int i = 0; i < n; ++i) itl_->Observe(gap_seconds / n);
}

void ServingMetrics::OnGenerationDone(const GenerationUpdate& u) {
  duration_->Observe(u.total_seconds);
  queue_->Observe(u.queue_seconds);
  if (u.completion_tokens > 0) ttft_->Observe(u.ttft_seconds);
  prompt_tokens_->Increment(u.prompt_tokens);
  generated_tokens_->Increment(u.completion_tokens);
  const int reason = int(u.finish_reason);
  const bool known = u.status.ok() && reason >= 0 && reason < kNumFinishReasons;
  generations_[known ? reason : kNumFinishReasons]->Increment();
}

std::string ServingMetrics::Serialize() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (auto& f : engine_collector_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

void RequestMetrics::OnUpdate(const GenerationUpdate& u) {
  if (m_ == nullptr) return;
  if (!u.tokens.empty()) {
    const absl::Time now = absl::Now();
    if (last_ != absl::InfinitePast()) {
      m_->OnTokens(int(u.tokens.size()), absl::ToDoubleSeconds(now - last_));
    }
    last_ = now;
  }
  if (u.finished) m_->OnGenerationDone(u);
}

}  // namespace spikeserve
