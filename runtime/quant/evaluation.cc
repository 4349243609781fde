#include "runtime/quant/evaluation.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/model/shared_prefix.h"
#include "runtime/quant/calibration.h"

namespace spikeserve {
namespace {

constexpr int kBatch = 4;  // windows per forward call

// log-softmax of one logits row into `out`.
void LogSoftmax(const float* logits, int n, std::vector<double>* out) {
  const float mx = *std::max_element(logits, logits + n);
  double z = 0;
  for (int i = 0; i < n; ++i) z += std::exp(double(logits[i]) - mx);
  const double lz = mx + std::log(z);
  out->resize(n);
  for (int i = 0; i < n; ++i) (*out)[i] = logits[i] - lz;
}

// Runs one side over a batch of windows; `rows` receives, per window, the
// [len][vocab] logits predicting each window token (row t predicts w[t]).
class SideRunner {
 public:
  SideRunner(const EvalSide& side, int32_t bos) : side_(side), bos_(bos) {}

  absl::Status Init(int max_len) {
    const Model& m = *side_.model;
    auto pool = m.NewKvPool(
        kBatch * (max_len / 16 + 2) + int(side_.prefix.size()) / 16 + 2, 16);
    if (!pool.ok()) return pool.status();
    pool_ = *std::move(pool);
    if (!side_.prefix.empty()) {
      SequenceKv seq(pool_.get());
      ForwardOptions fp32;
      fp32.all_fp32 = true;
      if (absl::Status s =
              m.Forward({{&seq, side_.prefix, false}}, &prefix_logits_, fp32);
          !s.ok()) {
        return s;
      }
      seq.Release();
      auto p = SharedPrefix::Compute(m, pool_.get(), side_.prefix);
      if (!p.ok()) return p.status();
      prefix_ = *std::move(p);
    }
    return absl::OkStatus();
  }

  // logits rows for windows[i..j), concatenated, each window contributing
  // w.size() rows (row t predicts w[t]).
  absl::Status Run(const std::vector<std::vector<int32_t>>& windows, size_t i,
                   size_t j, std::vector<float>* rows, double* seconds) {
    const Model& m = *side_.model;
    const int vocab = m.config().vocab_size;
    std::vector<std::unique_ptr<SequenceKv>> seqs;
    std::vector<std::vector<int32_t>> inputs;
    std::vector<BatchEntry> batch;
    inputs.reserve(j - i);
    for (size_t k = i; k < j; ++k) {
      seqs.push_back(std::make_unique<SequenceKv>(pool_.get()));
      if (prefix_) {
        if (absl::Status s = prefix_->AttachTo(seqs.back().get()); !s.ok()) {
          return s;
        }
        inputs.push_back(windows[k]);
      } else {
        inputs.push_back({bos_});
        inputs.back().insert(inputs.back().end(), windows[k].begin(),
                             windows[k].end());
      }
      batch.push_back({seqs.back().get(), inputs.back(), true});
    }
    const auto t0 = std::chrono::steady_clock::now();
    if (absl::Status s = m.Forward(batch, &logits_, side_.options); !s.ok()) {
      return s;
    }
    *seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    rows->clear();
    size_t at = 0;
    for (size_t k = 0; k < inputs.size(); ++k) {
      const size_t n = inputs[k].size();
      if (prefix_) {  // first target predicted by the prefix's last row
        rows->insert(rows->end(), prefix_logits_.begin(), prefix_logits_.end());
        rows->insert(rows->end(), logits_.begin() + at * vocab,
                     logits_.begin() + (at + n - 1) * vocab);
      } else {  // rows 0..n-2 predict window tokens; last row predicts past
        rows->insert(rows->end(), logits_.begin() + at * vocab,
                     logits_.begin() + (at + n - 1) * vocab);
      }
      at += n;
    }
    return absl::OkStatus();
  }

  int64_t forwarded = 0;

 private:
  const EvalSide& side_;
  int32_t bos_;
  std::unique_ptr<KvPool> pool_;
  std::unique_ptr<SharedPrefix> prefix_;
  std::vector<float> prefix_logits_, logits_;
};

}  // namespace

std::vector<std::vector<int32_t>> MakeWindows(
    const std::vector<int32_t>& tokens, int window, int max_windows) {
  std::vector<std::vector<int32_t>> out;
  for (size_t i = 0; i < tokens.size(); i += window) {
    const size_t n = std::min<size_t>(window, tokens.size() - i);
    if (n < size_t(window) / 2 || n < 2) break;
    out.emplace_back(tokens.begin() + i, tokens.begin() + i + n);
    if (max_windows > 0 && int(out.size()) == max_windows) break;
  }
  return out;
}

absl::StatusOr<EvalResult> Evaluate(
    const EvalSide& test, const EvalSide* reference,
    const std::vector<std::vector<int32_t>>& windows, int32_t bos) {
  if (windows.empty()) {
    return absl::InvalidArgumentError("evaluate: no windows to score");
  }
  const int vocab = test.model->config().vocab_size;
  if (reference && reference->model->config().vocab_size != vocab) {
    return absl::InvalidArgumentError("evaluate: vocabularies differ");
  }
  size_t max_len = 0;
  for (const auto& w : windows) max_len = std::max(max_len, w.size());
  SideRunner t(test, bos);
  if (absl::Status s = t.Init(int(max_len) + 1); !s.ok()) return s;
  std::unique_ptr<SideRunner> r;
  if (reference) {
    r = std::make_unique<SideRunner>(*reference, bos);
    if (absl::Status s = r->Init(int(max_len) + 1); !s.ok()) return s;
  }
  EvalResult out;
  std::vector<float> trows, rrows;
  std::vector<double> lp, lq;
  std::vector<double> kls;
  int64_t nonfinite_kl = 0;  // positions whose KL is NaN or infinite
  int64_t agree = 0, forwarded = 0;
  double ref_seconds = 0;
  for (size_t i = 0; i < windows.size(); i += kBatch) {
    const size_t j = std::min(windows.size(), i + kBatch);
    if (absl::Status s = t.Run(windows, i, j, &trows, &out.seconds); !s.ok()) {
      return s;
    }
    if (r) {
      if (absl::Status s = r->Run(windows, i, j, &rrows, &ref_seconds);
          !s.ok()) {
        return s;
      }
    }
    size_t row = 0;
    for (size_t k = i; k < j; ++k) {
      forwarded += int64_t(windows[k].size()) + (test.prefix.empty() ? 1 : 0);
      for (int32_t target : windows[k]) {
        const float* tl = &trows[row * vocab];
        LogSoftmax(tl, vocab, &lq);
        out.nll -= lq[target];
        if (r) {
          const float* rl = &rrows[row * vocab];
          LogSoftmax(rl, vocab, &lp);
          double kl = 0;
          for (int v = 0; v < vocab; ++v)
            kl += std::exp(lp[v]) * (lp[v] - lq[v]);
          if (!std::isfinite(kl)) ++nonfinite_kl;
          kls.push_back(std::max(0.0, kl));
          agree += std::max_element(tl, tl + vocab) - tl ==
                   std::max_element(rl, rl + vocab) - rl;
        }
        ++row;
        ++out.tokens;
      }
    }
  }
  out.nll /= double(out.tokens);
  out.perplexity = std::exp(out.nll);
  out.tokens_per_second = out.seconds > 0 ? forwarded / out.seconds : 0;
  if (!kls.empty()) {
    double sum = 0;
    for (double k : kls) sum += k;
    out.kl_mean = sum / double(kls.size());
    const size_t p99 =
        std::min(kls.size() - 1, size_t(0.99 * double(kls.size())));
    std::nth_element(kls.begin(), kls.begin() + p99, kls.end());
    out.kl_p99 = kls[p99];
    out.top1_agreement = double(agree) / double(out.tokens);
  }
  // A broken model or plan gives NaN or infinite logits: fail, naming the
  // value, rather than report a number that is not one (and not JSON).
  for (const auto& [name, v] : {std::pair<const char*, double>{"nll", out.nll},
                                {"perplexity", out.perplexity},
                                {"kl_mean", out.kl_mean},
                                {"kl_p99", out.kl_p99}}) {
    if (!std::isfinite(v)) {
      return absl::FailedPreconditionError(
          absl::StrCat("evaluation: ", name, " = ", v,
                       " is not finite (the model gave non-finite logits)"));
    }
  }
  if (nonfinite_kl > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "evaluation: the KL divergence is not finite at ", nonfinite_kl,
        " positions (the model gave non-finite logits)"));
  }
  return out;
}

}  // namespace spikeserve
