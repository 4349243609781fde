// What the model reports while it runs, for metrics and calibration. The
// runtime knows nothing of Prometheus: server/metrics implements this.
#ifndef SPIKESERVE_RUNTIME_MODEL_FORWARD_OBSERVER_H_
#define SPIKESERVE_RUNTIME_MODEL_FORWARD_OBSERVER_H_

#include <chrono>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "runtime/model/site.h"

namespace spikeserve {

// Called on the thread that runs Forward, synchronously: keep it cheap.
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;

  // The input of `site` in `layer` for the whole batch: x is [m][width]
  // row-major; row_absmax[r] = max_j |x[r][j]|; rows of batch entry e are
  // [seq_bounds[e], seq_bounds[e+1]). Called before the site's matmul.
  virtual void OnSiteInput(int layer, Site site, const float* x, int m,
                           int width, absl::Span<const float> row_absmax,
                           absl::Span<const int> seq_bounds) {}

  // Rows of `site` computed in FP32 by the spike guard instead of INT8.
  virtual void OnGuardFallback(int layer, Site site, int rows) {}

  // Wall time of one half of a layer over the whole batch.
  virtual void OnLayerPart(int layer, LayerPart part, double seconds) {}
};

// OnLayerPart's seconds from a to b.
inline double SecondsBetween(std::chrono::steady_clock::time_point a,
                             std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Forwards every call to several observers, in order (e.g. metrics plus a
// test's probe). Does not own them.
class ForwardObserverList final : public ForwardObserver {
 public:
  explicit ForwardObserverList(std::vector<ForwardObserver*> observers)
      : observers_(std::move(observers)) {}
  void OnSiteInput(int layer, Site site, const float* x, int m, int width,
                   absl::Span<const float> row_absmax,
                   absl::Span<const int> seq_bounds) override {
    for (ForwardObserver* o : observers_) {
      o->OnSiteInput(layer, site, x, m, width, row_absmax, seq_bounds);
    }
  }
  void OnGuardFallback(int layer, Site site, int rows) override {
    for (ForwardObserver* o : observers_) o->OnGuardFallback(layer, site, rows);
  }
  void OnLayerPart(int layer, LayerPart part, double seconds) override {
    for (ForwardObserver* o : observers_) o->OnLayerPart(layer, part, seconds);
  }

 private:
  std::vector<ForwardObserver*> observers_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_FORWARD_OBSERVER_H_
