#include "runtime/model/smoothing.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace spikeserve {

std::vector<float> SmoothScales(absl::Span<const float> act_max,
                                const Matrix& w, float alpha) {
  const int k = w.cols;
  std::vector<float> wmax(k, 0.0f);
  for (int r = 0; r < w.rows; ++r) {
    const float* row = w.row(r);
    for (int j = 0; j < k; ++j) wmax[j] = std::max(wmax[j], std::abs(row[j]));
  }
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
    LayerWeights& L = w->layers[key.layer];
    Matrix* mat = nullptr;
    switch (key.site) {
      case Site::kQkv:
        mat = &L.wqkv;
        break;
      case Site::kGateUp:
        mat = &L.w_gate_up;
        break;
      case Site::kDown:
        mat = &L.w_down;
        break;
      case Site::kO:
        return absl::InvalidArgumentError(
            "smoothing: site o has no producer to fold 1/s into");
    }
    if (int(s.size()) != mat->cols) {
      return absl::InvalidArgumentError(
          absl::StrCat("smoothing: ", SiteKeyName(key), " has ", s.size(),
                       " scales for ", mat->cols, " channels"));
    }
    for (int r = 0; r < mat->rows; ++r) {
      float* row = mat->data.data() + size_t(r) * mat->cols;
      for (int j = 0; j < mat->cols; ++j) row[j] *= s[j];
    }
    if (key.site == Site::kQkv || key.site == Site::kGateUp) {
      std::vector<float>& gain =
          key.site == Site::kQkv ? L.attn_norm : L.ffn_norm;
      for (int j = 0; j < mat->cols; ++j) gain[j] /= s[j];
    } else {  // down: scale up's output rows (rows ffn .. 2 ffn of gate_up)
      for (int j = 0; j < c.ffn; ++j) {
        float* row = L.w_gate_up.data.data() + size_t(c.ffn + j) * c.hidden;
        for (int i = 0; i < c.hidden; ++i) row[i] /= s[j];
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace spikeserve
