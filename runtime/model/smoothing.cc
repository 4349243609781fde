#include "runtime/model/smoothing.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace spikeserve {

std::vector<float> SmoothScales(absl::Span<const float> act_max,
                                const WeightRows& w, float alpha) {
  const int k = w.cols();
  std::vector<float> wmax(k, 0.0f), row(k);
  for (int r = 0; r < w.rows(); ++r) {
    w.Row(r, row.data());
    for (int j = 0; j < k; ++j) wmax[j] = std::max(wmax[j], std::abs(row[j]));
  }
  w.Done(0, w.rows());
  std::vector<float> s(k, 1.0f);
  for (int j = 0; j < k; ++j) {
    if (act_max[j] <= 0 || wmax[j] <= 0) continue;
    const double v = std::pow(double(act_max[j]), alpha) /
                     std::pow(double(wmax[j]), 1.0 - alpha);
    s[j] = float(std::clamp(v, 1e-5, 1e5));
  }
  return s;
}

absl::Status ApplySmoothing(const ModelConfig& c,
                            const std::map<SiteKey, std::vector<float>>& scales,
                            ModelWeights* w) {
  for (const auto& [key, s] : scales) {
    if (key.layer < 0 || key.layer >= c.n_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "smoothing: layer of ", SiteKeyName(key), " out of range"));
    }
    if (key.site == Site::kO) {
      return absl::InvalidArgumentError(
          "smoothing: site o has no producer to fold 1/s into");
    }
    const int cols = key.site == Site::kDown ? c.ffn : c.hidden;
    if (int(s.size()) != cols) {
      return absl::InvalidArgumentError(
          absl::StrCat("smoothing: ", SiteKeyName(key), " has ", s.size(),
                       " scales for ", cols, " channels"));
    }
    if (key.site != Site::kDown) {
      LayerWeights& L = w->layers[key.layer];
      std::vector<float>& gain =
          key.site == Site::kQkv ? L.attn_norm : L.ffn_norm;
      for (int j = 0; j < cols; ++j) gain[j] /= s[j];
    }
  }
  return absl::OkStatus();
}

RowTransform SmoothingTransform(
    const ModelConfig& c, const std::map<SiteKey, std::vector<float>>& scales,
    const SiteKey& key) {
  RowTransform t;
  if (auto it = scales.find(key); it != scales.end()) t.col_scale = it->second;
  if (key.site == Site::kGateUp) {
    if (auto it = scales.find({key.layer, Site::kDown}); it != scales.end()) {
      t.divide_from = c.ffn;  // the up rows
      t.row_divisor = it->second;
    }
  }
  return t;
}

}  // namespace spikeserve
