// Calibration (method.md §4-5): activation statistics per site over
// calibration windows, QFeM site selection and the QFeP prefix search.
// Works on token ids; the tools handle text.
#ifndef SPIKESERVE_RUNTIME_QUANT_CALIBRATION_H_
#define SPIKESERVE_RUNTIME_QUANT_CALIBRATION_H_

#include <map>
#include <set>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/model.h"
#include "runtime/model/site.h"
#include "runtime/quant/gptq.h"

namespace spikeserve {

struct SiteCalibration {
  double spike_ratio = 0;    // mean over windows of max_t a_t / median_t a_t
  double max_absmax = 0;     // max over all tokens of a_t
  double median_absmax = 0;  // median over all tokens of a_t
  std::vector<float> channel_max;  // [width] max_t |x[t][j]| (SmoothQuant)
  // [width] mean_t x[t][j]², the diagonal of E[xxᵀ]: W4A8 groups weight
  // their weights' errors by it (w4_clip_search.h).
  std::vector<float> channel_mean_square;
  // Token with the largest a_t and that value (spike source).
  int32_t top_token = -1;
  double top_absmax = 0;
};

struct CalibrationStats {
  std::map<SiteKey, SiteCalibration> sites;
  int windows = 0;
  int64_t tokens = 0;  // scored tokens (prefix rows excluded)
};

// Windows everywhere here are text tokens without BOS: without a prefix
// each runs as [bos] + window, with a (QFeP) prefix as prefix + window.

// Runs the windows through `model` in FP32 and gathers per-site statistics
// over every position (BOS included: it spikes like a first token). With a
// prefix, its positions are not counted (method.md §5: statistics with the
// prefix in place).
absl::StatusOr<CalibrationStats> CollectSiteStats(
    const Model& model, const std::vector<std::vector<int32_t>>& windows,
    const std::vector<int32_t>& prefix, int32_t bos);

// Σ_t x_t·x_tᵀ ([width][width], row-major) of the input of each site in
// `sites` over the same rows as CollectSiteStats (FP32, after `prefix`, its
// positions not counted): GPTQ's H (gptq.h). 4·width² bytes per site.
absl::StatusOr<std::map<SiteKey, std::vector<float>>> CollectSiteGrams(
    const Model& model, const std::vector<std::vector<int32_t>>& windows,
    const std::vector<int32_t>& prefix, int32_t bos,
    const std::set<SiteKey>& sites);

// GPTQ (gptq.h) of each site of `groups` (-> group size, 0 = the largest
// of 128/64/32 dividing its width) of `model`, on the rows its kernels
// quantize (its transforms applied) with its inputs over the windows as
// CollectSiteGrams gathers them (every site's E[xxT] held at once).
// `options.group` is ignored. Errors name the site.
absl::StatusOr<std::map<SiteKey, W4Plain>> GptqSites(
    const Model& model, const std::map<SiteKey, int>& groups,
    const GptqOptions& options,
    const std::vector<std::vector<int32_t>>& windows,
    const std::vector<int32_t>& prefix, int32_t bos);

// KL(softmax(p) || softmax(q)) over n logits, in nats.
double KlDivergence(const float* p_logits, const float* q_logits, int n);

// Sites sorted by spike ratio, largest first.
std::vector<SiteKey> SitesBySpikeRatio(const CalibrationStats& stats);

// Mean KL(FP32 || scheme) of the next-token distributions over every
// window token (nats), the scheme being `model` run with `options` and the
// reference the same model with every site in FP32, both after `prefix`
// (empty: after BOS).
absl::StatusOr<double> MeanKlFromFp32(
    const Model& model, const std::vector<std::vector<int32_t>>& windows,
    const ForwardOptions& options, int32_t bos,
    const std::vector<int32_t>& prefix = {});

struct QfemChoice {
  std::set<SiteKey> sites;  // excluded from activation quantization
  double alpha = 0;         // smallest excluded ratio (threshold)
  double w8a8_kl = 0;       // KL from FP32 with no site excluded
  double chosen_kl = 0;     // KL from FP32 with `sites` excluded
};

// QFeM "auto": the fewest top-ratio sites whose exclusion brings the W8A8
// model's calibration loss within `tolerance` of FP32, trying k = 0 ..
// max_sites sites in ratio order, with the QFeP `prefix` in place when one
// is used (the spikes it absorbs then need no exclusion). The loss is the
// mean KL divergence from FP32 (nats): unlike the NLL gap it cannot look
// better than FP32 by chance. `model` must be W8A8.
absl::StatusOr<QfemChoice> SelectQfemSites(
    const Model& model, const CalibrationStats& stats,
    const std::vector<std::vector<int32_t>>& windows, int32_t bos,
    double tolerance, int max_sites, const std::vector<int32_t>& prefix = {});

struct W4Choice {
  // The W4A8 sites -> group; the other quantized sites stay W8A8.
  std::map<SiteKey, int> sites;
  // Every candidate with the KL increase (nats) it causes alone in W4A8
  // over the W8A8 plan, in the order sites were added (least damage per
  // weight first).
  std::vector<std::pair<SiteKey, double>> ranked;
  double w8a8_kl = 0;             // KL from FP32 of the plan with no W4A8 site
  double chosen_kl = 0;           // with `sites` in W4A8
  double w4_weight_fraction = 0;  // of the quantized sites' weights
};

// Mixed precision "auto" (spike-aware mixed precision): each quantized site
// of the W8A8 options `base` (QFeM sites, transforms, activation mode) is
// made W4A8 alone, in groups of `group`, and scored by the KL increase over
// `base` (mean KL from FP32 on `windows` after `prefix`); sites are then
// made W4A8 in increasing damage per weight for as long as the whole set's
// KL stays within `tolerance` nats of base's (a binary search over how
// many: the KL grows close to monotonically with the count) and the W4A8
// sites hold at most `max_weight_fraction` of the quantized weights (a
// size budget: the search windows under-state the damage on other text,
// docs/w4a8.md). base.w4_with_min makes the groups asymmetric. `source` is
// the model whose weights are re-quantized (Model::WithQuant).
absl::StatusOr<W4Choice> SelectW4Sites(
    const Model& source, const QuantOptions& base,
    const std::vector<std::vector<int32_t>>& windows, int32_t bos,
    const std::vector<int32_t>& prefix, int group, double tolerance,
    double max_weight_fraction = 1.0);

struct QfepChoice {
  std::vector<int32_t> prefix;  // [bos, c*, t*]
  SiteKey spike_site;
  double score = 0;  // a[pos 2] / a[pos 4] at the spike site
  std::vector<int32_t> candidates;
};

// The reference prefix search: spike site m* = largest ratio; candidate
// tokens t = the 3 with the largest a_t at m* over [bos] + window
// (excluding `bos`); context tokens c = the `n_context` most frequent ids
// of the windows; score each [bos, c, t, c, t] in FP32 by a[2] / a[4] at m*.
absl::StatusOr<QfepChoice> SearchQfepPrefix(
    const Model& model, const CalibrationStats& stats,
    const std::vector<std::vector<int32_t>>& windows, int32_t bos,
    int n_context = 200);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_QUANT_CALIBRATION_H_
