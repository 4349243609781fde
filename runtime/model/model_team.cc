// Model::LayersInTeam: a decode step's layers in one OpenMP parallel
// region.
//
// Decode is bound by the weights it streams, and between two matmuls one
// thread does the step's serial work (norms, quantization of the next
// input, RoPE, the KV write, attention at short context) while the others
// wait: on Ice Lake, SmolLM2-135M W4A8, the second thread idled ~24% of a
// step, and a fork and a join per matmul. Here the team forks once per
// step; during each serial step the other threads read ahead the first
// weights of their share of the next matmul (streamed from DRAM either
// way: read now, they come from L2 when it runs), and the matmuls split
// their units so that no thread idles at the barrier (work_split.h).
// Measured there (spikeserve-speed, decode runs of 128 tokens switching
// between the two forms in one process, paired medians of 15): W4A8 +8-9%
// (+2.6% without the read-ahead; with it, a static split of the matmuls
// is 6% slower than WorkSplit's); at 1024 cached positions +2-3%; the
// default W8A8 plan +8%. Reading on into the matmul after next gained
// +1.3-1.5% more (the longest serial step, RoPE and attention before the
// small o matmul, outlasted one share); three ahead, nothing more.
//
// Every kernel, attention item and elementwise op computes what Layers
// computes for the same rows, so the outputs are bit-identical.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "runtime/linear/quantize.h"
#include "runtime/linear/work_split.h"
#include "runtime/model/attention.h"
#include "runtime/model/model.h"
#include "runtime/model/ops.h"

namespace spikeserve {
namespace {

// Decode batches of up to this many rows run in one region: W4A8 135M,
// Ice Lake, batches of n sequences switching forms in one process (paired
// medians of 6-10): n = 1 +7.9%, 4 +7.8%, 8 +17.7%, 16 +14.5%. Larger
// batches were not measured (from 32 rows the per-row steps fork).
constexpr int kTeamMaxRows = 16;
// Units per claim: about this many weight bytes (~1 us of streaming).
constexpr size_t kTeamClaimBytes = size_t(16) << 10;
// How far a waiting thread reads ahead into its share of the next matmul
// (L2 holds it): 128 KiB to 1 MiB measured alike on Ice Lake (+8-9%).
constexpr size_t kReadAheadBytes = size_t(256) << 10;
constexpr size_t kReadAheadPiece = 4096;
// Pauses (~40 ns each on Ice Lake) a waiting thread spins before yielding:
// a serial step is 25-400 of them.
constexpr int kSpinsBeforeYield = 1 << 10;

}  // namespace

bool Model::TeamEligible(int m, const ForwardOptions& opt) const {
  if (m > kTeamMaxRows || omp_in_parallel() || omp_get_max_threads() < 2 ||
      !opt.one_region || opt.all_fp32 ||
      (opt.fp32_sites && !opt.fp32_sites->empty())) {
    return false;
  }
  for (const auto& layer : kernels_) {
    for (const SiteKernels& k : layer) {
      if (k.int8 == nullptr || k.int8->TeamUnits(m) == 0) return false;
    }
  }
  return true;
}

namespace {

// Units of a team-form kernel per claim, m rows: about kTeamClaimBytes of
// weights.
int ClaimUnits(const Linear& k, int m) {
  const size_t unit = k.TeamUnitWeights(m, 0, 1).size();
  return std::max<int>(1, int(kTeamClaimBytes / std::max<size_t>(1, unit)));
}

// The matmuls of a step in the order they run, each with its rows.
struct Matmul {
  const Linear* k;
  int rows;
};

// What one thread has read ahead: the first `bytes` of its share of
// matmul `index` (of the step's order).
struct ReadAhead {
  int index = -1;
  size_t bytes = 0;
};

// Thread t's share of `mm`'s weights as WorkSplit gives it first, up to
// kReadAheadBytes.
absl::Span<const uint8_t> FirstShare(const Matmul& mm, int t, int nt) {
  const int units = mm.k->TeamUnits(mm.rows);
  if (units == 0) return {};
  const int u0 = int(int64_t(units) * t / nt);
  const int u1 = int(int64_t(units) * (t + 1) / nt);
  const absl::Span<const uint8_t> w = mm.k->TeamUnitWeights(mm.rows, u0, u1);
  return w.first(std::min(w.size(), kReadAheadBytes));
}

// Reads ahead (one load per cache line, in pieces of kReadAheadPiece) the
// first shares of matmuls `next` and `next + 1` until done(), continuing
// where `ra` stopped; then waits for done().
template <typename Done>
void ReadAheadUntil(absl::Span<const Matmul> order, int next, int t, int nt,
                    ReadAhead* ra, const Done& done) {
  uint64_t sink = 0;
  for (int i = next; i < std::min<int>(next + 2, order.size()); ++i) {
    const absl::Span<const uint8_t> w = FirstShare(order[i], t, nt);
    size_t at = ra->index == i ? ra->bytes : 0;
    while (at < w.size() && !done()) {
      const size_t end = std::min(w.size(), at + kReadAheadPiece);
      for (; at < end; at += 64) {
        uint64_t v;
        std::memcpy(&v, w.data() + at, 8);
        sink += v;
      }
    }
    *ra = {i, at};
    if (at < w.size()) break;  // done() came first
  }
  // A serial step lasts microseconds; if it lasts far longer (thread 0
  // descheduled: more threads than cores, a CPU quota), give the core up.
  for (int spins = 0; !done(); ++spins) {
    if (spins < kSpinsBeforeYield) {
      _mm_pause();
    } else {
      std::this_thread::yield();
    }
  }
  asm volatile("" : : "r"(sink));
}

}  // namespace

void Model::LayersInTeam(absl::Span<const BatchEntry> batch,
                         absl::Span<const int> bounds, const int* row_pos,
                         const ForwardOptions& opt, const StepBuffers& b,
                         std::vector<float>* logits) const {
  const ModelConfig& c = config_;
  const int m = bounds.back();
  const int H = c.hidden, qkv_w = c.q_dim() + 2 * c.kv_dim();
  const int nt = omp_get_max_threads();
  using Clock = std::chrono::steady_clock;
  // The step's matmuls in order: the layers' sites, then the lm_head.
  std::vector<Matmul> order;
  for (const auto& layer : kernels_) {
    for (Site s : {Site::kQkv, Site::kO, Site::kGateUp, Site::kDown}) {
      order.push_back({layer[int(s)].int8.get(), m});
    }
  }
  if (logits != nullptr) {
    int rows = 0;
    for (const BatchEntry& e : batch) {
      rows += e.all_logits ? int(e.tokens.size()) : e.last_logits ? 1 : 0;
    }
    order.push_back({lm_head_.get(), rows});
  }
  std::atomic<int> published{0};
  WorkSplit split(0, nt, 1);
  bool split_attention = false;  // written by thread 0 in a serial step
  std::vector<float>& absmax = *b.absmax;
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    int epoch = 0;
    int matmuls_run = 0;  // of `order`, by this thread
    ReadAhead ahead;
    // Thread 0 runs `work`; the others meanwhile read ahead the weights
    // they will take first in the next two matmuls (streamed from DRAM
    // either way: read now, they come from L2 when the matmul runs).
    auto serial = [&](const auto& work) {
      ++epoch;
      if (t == 0) {
        work();
        published.store(epoch, std::memory_order_release);
        return;
      }
      ReadAheadUntil(order, matmuls_run, t, nt, &ahead, [&] {
        return published.load(std::memory_order_acquire) >= epoch;
      });
    };
    // Thread 0, in a serial step: the site's input statistics and
    // quantization, and the split of its units.
    auto prepare = [&](int l, Site site, const float* x) {
      const Linear& k = *kernels_[l][int(site)].int8;
      const int width = k.in_features();
      absmax.resize(m);
      for (int r = 0; r < m; ++r) {
        absmax[r] = AbsMax(x + size_t(r) * width, width);
      }
      if (opt.observer != nullptr) {
        opt.observer->OnSiteInput(l, site, x, m, width, absmax, bounds);
      }
      k.TeamPrepare({x, m, bounds, absmax.data()});
      split.Reset(k.TeamUnits(m), nt, ClaimUnits(k, m));
    };
    // Every thread: the site's matmul, then a barrier (its outputs are
    // read by thread 0 next).
    auto run = [&](int l, Site site, float* y) {
      const Linear& k = *kernels_[l][int(site)].int8;
      split.Work(t, [&](int u0, int u1) { k.TeamRun(u0, u1, y); });
      ++matmuls_run;
#pragma omp barrier
    };
    // Thread 0: the residual stream's norm (and rotation) into xn, the
    // input of `site`.
    auto norm_and_prepare = [&](const std::vector<float>& gain, int l,
                                Site site) {
      NormRows(gain, m, b.x, b.xn);
      prepare(l, site, b.xn);
    };
    // Thread 0: the spike guard's FP32 rows of a site just run.
    auto guard = [&](int l, Site site, const float* x, float* y) {
      const SiteKernels& k = kernels_[l][int(site)];
      if (k.guard_absmax <= 0) return;
      int fallback = 0;
      const int width = k.fp32->in_features(), out = k.fp32->out_features();
      for (int r = 0; r < m; ++r) {
        if (absmax[r] <= k.guard_absmax) continue;
        const int one[2] = {0, 1};
        k.fp32->Forward({x + size_t(r) * width, 1, one, nullptr},
                        y + size_t(r) * out);
        ++fallback;
      }
      if (fallback > 0 && opt.observer != nullptr) {
        opt.observer->OnGuardFallback(l, site, fallback);
      }
    };
    for (int l = 0; l < c.n_layers; ++l) {
      const LayerWeights& L = weights_.layers[l];
      Clock::time_point t0, t1;
      serial([&] {
        if (opt.observer) t0 = Clock::now();
        norm_and_prepare(L.attn_norm, l, Site::kQkv);
      });
      run(l, Site::kQkv, b.qkv);
      serial([&] {
        guard(l, Site::kQkv, b.xn, b.qkv);
        int r = 0;
        for (const BatchEntry& e : batch) {
          for (size_t i = 0; i < e.tokens.size(); ++i, ++r) {
            PositionRow(L, l, e.kv, row_pos[r],
                        &b.rope[size_t(r) * c.rope_dims],
                        &b.qkv[size_t(r) * qkv_w], &b.q[size_t(r) * c.q_dim()]);
          }
        }
        AttentionQueries(batch, b, b.queries);
        split_attention =
            SplitAttention(PlanAttention(c, *b.queries, b.attention));
        if (split_attention) {
          split.Reset(int(b.attention->items.size()), nt, 1);
          return;
        }
        RunAttentionItems(c, l, *b.queries, *b.attention, 0,
                          int(b.attention->items.size()));
        prepare(l, Site::kO, b.att);
      });
      if (split_attention) {  // as thread 0 published
        split.Work(t, [&](int i0, int i1) {
          RunAttentionItems(c, l, *b.queries, *b.attention, i0, i1);
        });
#pragma omp barrier
        serial([&] { prepare(l, Site::kO, b.att); });
      }
      run(l, Site::kO, b.tmp);
      serial([&] {
        guard(l, Site::kO, b.att, b.tmp);
        AddResidual(b.tmp, m, H, b.x);
        if (opt.observer) {
          t1 = Clock::now();
          opt.observer->OnLayerPart(l, LayerPart::kAttention,
                                    SecondsBetween(t0, t1));
        }
        norm_and_prepare(L.ffn_norm, l, Site::kGateUp);
      });
      run(l, Site::kGateUp, b.gu);
      serial([&] {
        guard(l, Site::kGateUp, b.xn, b.gu);
        for (int r = 0; r < m; ++r) {
          const float* g = &b.gu[size_t(r) * 2 * c.ffn];
          SiluMul(g, g + c.ffn, c.ffn, &b.h[size_t(r) * c.ffn]);
        }
        if (down_rotation_) down_rotation_->Apply(b.h, m);
        prepare(l, Site::kDown, b.h);
      });
      run(l, Site::kDown, b.tmp);
      serial([&] {
        guard(l, Site::kDown, b.h, b.tmp);
        AddResidual(b.tmp, m, H, b.x);
        if (opt.observer) {
          opt.observer->OnLayerPart(l, LayerPart::kFfn,
                                    SecondsBetween(t1, Clock::now()));
        }
        if (l + 1 == c.n_layers && logits != nullptr) {
          const int n_out = HeadInput(batch, b.x, b.sel);
          logits->resize(size_t(n_out) * c.vocab_size);
          const int out_bounds[2] = {0, n_out};
          lm_head_->TeamPrepare({b.sel->data(), n_out, out_bounds});
          split.Reset(lm_head_->TeamUnits(n_out), nt,
                      ClaimUnits(*lm_head_, n_out));
        }
      });
    }
    if (logits != nullptr) {
      split.Work(t, [&](int u0, int u1) {
        lm_head_->TeamRun(u0, u1, logits->data());
      });
    }
  }
}

}  // namespace spikeserve
