// Serving metrics (design.md, metrics contract), the /metrics endpoint and
// the info gauges. Families are registered once at construction and their
// handles kept; label values come from bounded sets (rpc names, status code
// names). Engine gauges and counters (running, waiting, KV usage, prefix
// cache) are read from Engine::Stats() at scrape time by a collector, so
// they are exact at every scrape and cost nothing between scrapes.
//
// Thread-safety: every method may be called from any thread.
#ifndef SPIKESERVE_SERVER_SERVING_METRICS_H_
#define SPIKESERVE_SERVER_SERVING_METRICS_H_

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "runtime/serving/engine.h"
#include "server/http/metrics_http.h"

namespace spikeserve {

class ServingMetrics {
 public:
  // Serves /metrics on `bind` ("HOST:PORT"; port 0 = any free port) within
  // `limits`, or nowhere when `bind` is empty (tests scrape Serialize()).
  // Fails with a clear message when the port is taken.
  static absl::StatusOr<std::unique_ptr<ServingMetrics>> Create(
      const std::string& bind, const HttpLimits& limits = {});
  ~ServingMetrics();

  prometheus::Registry* registry() { return registry_.get(); }
  int port() const { return port_; }
  // The /metrics HTTP server (null: none).
  MetricsHttpServer* http() { return http_.get(); }

  // The engine whose statistics the scrape reports (null: none yet).
  void AttachEngine(const Engine* engine) { engine_.store(engine); }
  // spikeserve_build_info / spikeserve_quant_plan_info (value 1), labels
  // set once after the model is loaded.
  void SetInfo(const std::map<std::string, std::string>& build,
               const std::map<std::string, std::string>& plan);

  // A finished call of any method: `protocol` "grpc" (rpc = the method) or
  // "http" (rpc = the route); `code` is the canonical status either way
  // (HTTP 429 is RESOURCE_EXHAUSTED), so alerts and dashboards cover both.
  void OnRpcDone(const char* rpc, grpc::StatusCode code,
                 const char* protocol = "grpc");
  // Tokens streamed to a client `gap` seconds after its previous tokens
  // (the first tokens of a request have no gap: pass a negative one).
  void OnTokens(int n, double gap_seconds);
  // A finished generation request (usage and timings).
  void OnGenerationDone(const GenerationUpdate& final_update);

  // The text exposition of everything registered (what /metrics serves).
  std::string Serialize() const;

 private:
  class EngineCollector;
  ServingMetrics();

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<EngineCollector> engine_collector_;
  std::unique_ptr<MetricsHttpServer> http_;  // /metrics (null: none)
  int port_ = 0;
  std::atomic<const Engine*> engine_{nullptr};

  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  std::mutex requests_mu_;  // guards the lazily created (rpc, code) series
  std::map<std::tuple<std::string, std::string, int>, prometheus::Counter*>
      request_series_;
  prometheus::Histogram* duration_ = nullptr;
  prometheus::Histogram* queue_ = nullptr;
  prometheus::Histogram* ttft_ = nullptr;
  prometheus::Histogram* itl_ = nullptr;
  prometheus::Counter* prompt_tokens_ = nullptr;
  prometheus::Counter* generated_tokens_ = nullptr;
  // spikeserve_generations_total{finish_reason}: [FinishReason] and, last,
  // "error" (a request that failed).
  std::array<prometheus::Counter*, kNumFinishReasons + 1> generations_{};
  prometheus::Family<prometheus::Gauge>* build_info_ = nullptr;
  prometheus::Family<prometheus::Gauge>* plan_info_ = nullptr;
};

// One generation request's metrics, fed its updates in order (on the
// engine thread): token gaps and, at the end, usage and timings. `metrics`
// may be null (nothing recorded).
class RequestMetrics {
 public:
  explicit RequestMetrics(ServingMetrics* m) : m_(m) {}
  void OnUpdate(const GenerationUpdate& u);
  void OnFinish(const char* rpc, grpc::StatusCode code,
                const char* protocol = "grpc") {
    if (m_ != nullptr) m_->OnRpcDone(rpc, code, protocol);
  }

 private:
  ServingMetrics* const m_;
  absl::Time last_ = absl::InfinitePast();
};

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_SERVING_METRICS_H_
