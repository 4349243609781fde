// spikeserve-calibrate: measures activation spikes of a model on a text and
// writes a quant plan (JSON) plus a spike report (markdown + SVG heatmap).
//
//   spikeserve-calibrate --model PATH --text FILE --out PLAN.json
//       [--mode per-tensor-dynamic|per-token-dynamic|per-tensor-static]
//       [--qfem auto|off|LIST] [--qfep auto|off|TOKENS] [--smooth ALPHA]
//       [--rotate] [--guard FACTOR] [--window 512] [--windows 8]
//       [--weight_bits 8|4|auto|LIST] [--w4_group 32|64|128|auto]
//       [--w4_tolerance NATS] [--w4_fraction F] [--w4_min]
//       [--w4_importance=false] [--w4_gptq]
//   spikeserve-calibrate --model PATH --text FILE --restat PLAN.json
//       --out PLAN.json   (recompute the served-input statistics only)
#include <algorithm>
#include <cfloat>
#include <cstdio>
#include <fstream>
#include <string>
#include <tuple>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/flag_util.h"
#include "base/text_file.h"
#include "runtime/linear/w4a8_linear.h"
#include "runtime/model/smoothing.h"
#include "runtime/quant/calibration.h"
#include "runtime/quant/gptq.h"
#include "runtime/quant/quant_plan.h"
#include "runtime/quant/w4_weights_file.h"
#include "runtime/serving/model_bundle.h"
#include "tools/spike_report.h"
#include "tools/text_input.h"

ABSL_FLAG(std::string, model, "", "GGUF model file (required).");
ABSL_FLAG(std::string, text, "", "Calibration text file (required).");
ABSL_FLAG(std::string, out, "", "Plan to write, JSON (required).");
ABSL_FLAG(std::string, mode, "per-token-dynamic",
          "Activation mode: per-token-dynamic (one scale per token: the same "
          "tokens however requests are batched), per-tensor-static (one "
          "calibrated scale per site, also batch-invariant) or "
          "per-tensor-dynamic (one scale per sequence per call: for "
          "evaluation only, its output depends on how rows are batched).");
ABSL_FLAG(std::string, qfem, "auto",
          "QFeM: auto (fewest top-ratio sites bringing the KL from FP32 "
          "under --qfem_tolerance), off, alpha=R (ratio threshold), or a "
          "list LAYER.SITE,... (e.g. 1.down,29.down).");
ABSL_FLAG(double, qfem_tolerance, 0.02,
          "QFeM auto: allowed mean KL divergence from FP32, nats.");
ABSL_FLAG(int, qfem_max_sites, 24, "QFeM auto: most sites to exclude.");
ABSL_FLAG(bool, qfem_bf16, false,
          "Record that QFeM modules hold BF16 weights instead of FP32 (half "
          "the bytes; FP32 activations and sums).");
ABSL_FLAG(int, qfem_windows, 4,
          "QFeM and W4 auto: calibration windows scored per candidate set.");
ABSL_FLAG(int, qfem_window, 256,
          "QFeM and W4 auto: tokens of each scored window (a prefix of the "
          "calibration window), to keep the search fast.");
ABSL_FLAG(std::string, qfep, "auto",
          "QFeP prefix: auto (reference search), off, or token ids "
          "ID,ID,...");
ABSL_FLAG(int, qfep_context, 200,
          "QFeP auto: number of frequent context tokens tried.");
ABSL_FLAG(double, smooth, 0.0,
          "SmoothQuant migration strength alpha in (0, 1); 0 = off.");
ABSL_FLAG(bool, rotate, false,
          "Hadamard-rotate down_proj inputs (after smoothing if on).");
ABSL_FLAG(bool, rotate_norm, false,
          "Block-Hadamard-rotate the RMSNorm outputs that q/k/v and gate/up "
          "read (after smoothing if on).");
ABSL_FLAG(double, guard, 0.0,
          "Spike guard factor for per-tensor-static (0 = off).");
ABSL_FLAG(int, window, 512, "Calibration window, tokens.");
ABSL_FLAG(int, windows, 8, "Calibration windows used (0 = all).");
ABSL_FLAG(std::string, weight_bits, "8",
          "Weight precision of the quantized sites: 8 (W8A8), 4 (W4A8 "
          "everywhere), auto (mixed: sites made W4A8 in increasing KL damage "
          "per weight while the KL stays within --w4_tolerance of the W8A8 "
          "plan's), or a list of W4A8 sites LAYER.SITE,... (the rest W8A8).");
ABSL_FLAG(std::string, w4_group, "32",
          "W4A8 group along K: 32, 64, 128, or auto (the largest dividing "
          "each site's width).");
ABSL_FLAG(double, w4_tolerance, 0.05,
          "--weight_bits auto: allowed KL increase over the W8A8 plan, "
          "nats (scored on the QFeM search windows).");
ABSL_FLAG(double, w4_fraction, 1.0,
          "--weight_bits auto: most W4A8 share of the quantized weights "
          "(0..1), a size budget beside --w4_tolerance; the sites are taken "
          "in the same ranking.");
ABSL_FLAG(bool, w4_min, false,
          "W4A8 groups with a half minimum each besides the scale "
          "(asymmetric, as Q4_1; +0.5 bit per weight at group 32, about half "
          "the 4-bit error): written as weight_min on the W4A8 sites and "
          "used by the auto search.");
ABSL_FLAG(bool, w4_importance, true,
          "W4A8 sites record each input channel's mean square on the "
          "calibration windows (weight_importance), and their groups choose "
          "the clipping that minimises the weight error weighted by it, in "
          "the auto search too; false = round to nearest from each group's "
          "extremes.");
ABSL_FLAG(bool, w4_gptq, false,
          "Quantize the W4A8 sites by GPTQ (errors compensated across each "
          "row with the calibration windows' E[xxT]) and write their weights "
          "beside the plan (OUT without .json, + .w4.gguf; the plan's "
          "w4_weights); the server reads them instead of re-quantizing.");
ABSL_FLAG(bool, gptq_act_order, false,
          "--w4_gptq: quantize each row's columns loudest input channel "
          "first, the group scales chosen up front (false: in order, each "
          "group's scale from the row as updated).");
ABSL_FLAG(double, gptq_damp, 0.3,
          "--w4_gptq: added to E[xxT]'s diagonal, as a fraction of its mean.");
ABSL_FLAG(std::string, restat, "",
          "An existing plan for --model: recompute only its served-input "
          "statistics (served_median_absmax, served_spike_ratio: after its "
          "QFeP prefix, smoothing and rotation, what the server's spike "
          "metrics judge tokens against) on --text, keep every decision, and "
          "write it to --out (no report).");
ABSL_FLAG(std::string, report, "",
          "Report path prefix (writes PREFIX.md and PREFIX.svg); default: "
          "--out without .json plus .report");

namespace spikeserve {
namespace {

// A flag's list of sites "LAYER.SITE,...", or an error naming the flag and
// the forms it takes besides a list.
absl::StatusOr<std::set<SiteKey>> ParseSiteList(absl::string_view flag,
                                                absl::string_view forms,
                                                absl::string_view list,
                                                int n_layers) {
  std::set<SiteKey> out;
  for (absl::string_view part : absl::StrSplit(list, ',')) {
    absl::StatusOr<SiteKey> k = ParseSiteKey(part, n_layers);
    if (!k.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": use ", forms,
                       " or a list of sites: ", k.status().message()));
    }
    out.insert(*k);
  }
  return out;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "spikeserve-calibrate: %s\n", s.ToString().c_str());
  return 1;
}

absl::StatusOr<v1::ActivationMode> ParseMode(const std::string& m) {
  if (m == "per-tensor-dynamic") return v1::PER_TENSOR_DYNAMIC;
  if (m == "per-token-dynamic") return v1::PER_TOKEN_DYNAMIC;
  if (m == "per-tensor-static") return v1::PER_TENSOR_STATIC;
  return absl::InvalidArgumentError(
      absl::StrCat("--mode '", m,
                   "': use per-tensor-dynamic, per-token-dynamic or "
                   "per-tensor-static"));
}

// Writes `plan_path`'s plan to `out` with the served-input statistics of
// every site recomputed: the model as the plan serves it (smoothing and
// rotations, FP32 activations) after its QFeP prefix, on `windows`.
int Restat(const std::string& plan_path, const ModelBundle& bundle,
           const std::vector<std::vector<int32_t>>& windows, int32_t bos,
           const std::string& out) {
  absl::StatusOr<v1::QuantPlan> plan = ReadQuantPlan(plan_path);
  if (!plan.ok()) return Fail(plan.status());
  // ReadQuantPlan makes a relative w4_weights relative to the working
  // folder; the plan written keeps it as the file has it.
  absl::StatusOr<std::string> text = ReadTextFile(plan_path, 256 << 20);
  if (!text.ok()) return Fail(text.status());
  absl::StatusOr<v1::QuantPlan> as_written = ParseQuantPlan(*text, plan_path);
  if (!as_written.ok()) return Fail(as_written.status());
  const Model& fp32 = *bundle.model;
  absl::StatusOr<AppliedPlan> applied =
      ApplyQuantPlan(*plan, bundle.fingerprint, fp32.config());
  if (!applied.ok()) return Fail(applied.status());
  QuantOptions transforms;
  transforms.smooth_scales = applied->quant.smooth_scales;
  transforms.down_hadamard = applied->quant.down_hadamard;
  transforms.norm_hadamard = applied->quant.norm_hadamard;
  const Model* served = &fp32;
  std::unique_ptr<Model> transformed;
  if (!transforms.smooth_scales.empty() || transforms.down_hadamard ||
      transforms.norm_hadamard) {
    auto t = fp32.WithQuant(transforms);
    if (!t.ok()) return Fail(t.status());
    transformed = *std::move(t);
    served = transformed.get();
  }
  absl::StatusOr<CalibrationStats> stats =
      CollectSiteStats(*served, windows, applied->prefix, bos);
  if (!stats.ok()) return Fail(stats.status());
  for (v1::SiteStats& site : *plan->mutable_sites()) {
    absl::StatusOr<SiteKey> key = ParseSiteKey(
        absl::StrCat(site.layer(), ".", site.site()), fp32.config().n_layers);
    if (!key.ok()) return Fail(key.status());
    auto it = stats->sites.find(*key);
    if (it == stats->sites.end()) continue;
    site.set_served_spike_ratio(it->second.spike_ratio);
    site.set_served_median_absmax(it->second.median_absmax);
  }
  plan->set_w4_weights(as_written->w4_weights());
  if (absl::Status s = WriteQuantPlan(*plan, out); !s.ok()) return Fail(s);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

int Main() {
  const std::string model_path = absl::GetFlag(FLAGS_model);
  const std::string text_path = absl::GetFlag(FLAGS_text);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (model_path.empty() || text_path.empty() || out.empty()) {
    return Fail(
        absl::InvalidArgumentError("--model, --text and --out are required"));
  }
  absl::StatusOr<v1::ActivationMode> mode =
      ParseMode(absl::GetFlag(FLAGS_mode));
  if (!mode.ok()) return Fail(mode.status());
  const double smooth = absl::GetFlag(FLAGS_smooth);
  const std::string weight_bits = absl::GetFlag(FLAGS_weight_bits);
  absl::StatusOr<int> w4_group = ParseW4Group(absl::GetFlag(FLAGS_w4_group));
  if (!w4_group.ok() || *w4_group == kW4AsStored) {
    return Fail(
        absl::InvalidArgumentError("--w4_group: use 32, 64, 128 or auto"));
  }
  if (smooth < 0 || smooth >= 1) {
    return Fail(absl::InvalidArgumentError("--smooth must be in [0, 1)"));
  }
  // The FP32 reference streams its weights from the file: no FP32 copy.
  absl::StatusOr<ModelBundle> bundle =
      LoadModelBundle(model_path, QuantOptions{.fp32_streamed = true});
  if (!bundle.ok()) return Fail(bundle.status());
  const Model& fp32 = *bundle->model;
  const Tokenizer& tok = *bundle->tokenizer;
  const ModelConfig& c = fp32.config();
  // --weight_bits LIST, checked before the calibration's minutes of work.
  std::set<SiteKey> w4_list;
  if (weight_bits != "8" && weight_bits != "4" && weight_bits != "auto") {
    absl::StatusOr<std::set<SiteKey>> list =
        ParseSiteList("--weight_bits", "8, 4, auto", weight_bits, c.n_layers);
    if (!list.ok()) return Fail(list.status());
    w4_list = *std::move(list);
  }
  // --qfem and --qfep, parsed before the minutes of statistics they follow.
  const std::string qfem = absl::GetFlag(FLAGS_qfem);
  double qfem_alpha = 0;
  std::set<SiteKey> qfem_list;
  if (absl::StartsWith(qfem, "alpha=")) {
    if (!absl::SimpleAtod(qfem.substr(6), &qfem_alpha) ||
        !(qfem_alpha > 1 && qfem_alpha < 1e30)) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--qfem '", qfem, "': alpha=R needs a finite R > 1")));
    }
  } else if (qfem != "auto" && qfem != "off") {
    absl::StatusOr<std::set<SiteKey>> list =
        ParseSiteList("--qfem", "auto, off, alpha=R", qfem, c.n_layers);
    if (!list.ok()) return Fail(list.status());
    qfem_list = *std::move(list);
  }
  const std::string qfep = absl::GetFlag(FLAGS_qfep);
  std::vector<int32_t> qfep_ids;
  if (qfep != "auto" && qfep != "off") {
    for (absl::string_view part : absl::StrSplit(qfep, ',')) {
      int32_t id;
      if (!absl::SimpleAtoi(part, &id) || id < 0 || id >= c.vocab_size) {
        return Fail(absl::InvalidArgumentError(
            absl::StrCat("--qfep: '", part, "' is not a token id in [0, ",
                         c.vocab_size, ")")));
      }
      qfep_ids.push_back(id);
    }
  }
  // The ranges the server's plan check allows (quant_plan.cc), so that a
  // calibration never ends in a plan the server refuses.
  if (const double g = absl::GetFlag(FLAGS_guard); !(g >= 0 && g <= 1e6)) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--guard is ", g, "; use 0 (off) up to 1e6")));
  }
  for (const auto& [name, v] :
       {std::pair<const char*, double>{"--qfem_tolerance",
                                       absl::GetFlag(FLAGS_qfem_tolerance)},
        {"--w4_tolerance", absl::GetFlag(FLAGS_w4_tolerance)}}) {
    if (!(v >= 0 && v < 1e30)) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat(name, " is ", v, "; use a finite value >= 0 (nats)")));
    }
  }
  // A fixed W4A8 group must divide the input width of every site that may
  // take it (qkv, gate_up: hidden; o: the query width; down: ffn).
  if (weight_bits != "8" && *w4_group > 0) {
    // 4 or auto: every site may take the group; a list: its sites.
    const auto listed = [&](Site site) {
      return w4_list.empty() ||
             std::any_of(w4_list.begin(), w4_list.end(),
                         [&](const SiteKey& k) { return k.site == site; });
    };
    for (const auto& [site, width, on] :
         {std::tuple<const char*, int, bool>{
              "qkv and gate_up", c.hidden,
              listed(Site::kQkv) || listed(Site::kGateUp)},
          {"o", c.q_dim(), listed(Site::kO)},
          {"down", c.ffn, listed(Site::kDown)}}) {
      if (on && width % *w4_group != 0) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            "--w4_group ", *w4_group, " does not divide the input width ",
            width, " of the ", site,
            " sites; use auto (the largest of "
            "128, 64, 32 dividing each site's width) or a smaller group")));
      }
    }
  }
  if (const double f = absl::GetFlag(FLAGS_w4_fraction); !(f >= 0 && f <= 1)) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--w4_fraction is ", f, "; a share of the weights in [0, 1]")));
  }
  // GPTQ's damping keeps E[xxT] invertible (fewer calibration tokens than
  // input channels make it singular); 0 or less would fail after minutes
  // as "not positive semi-definite".
  if (const double d = absl::GetFlag(FLAGS_gptq_damp); !(d > 0 && d <= 1e3)) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--gptq_damp is ", d,
                     "; use a fraction of the mean diagonal in (0, 1000]")));
  }
  const int32_t bos = tok.bos_id() >= 0 ? tok.bos_id() : 0;
  absl::StatusOr<std::string> text = ReadTextFile(text_path);
  if (!text.ok()) return Fail(text.status());
  int64_t text_tokens = 0;
  auto windows = TextWindows(tok, *text, absl::GetFlag(FLAGS_window),
                             absl::GetFlag(FLAGS_windows), &text_tokens);
  if (!windows.ok()) return Fail(windows.status());
  std::fprintf(stderr, "calibrate: %zu windows of %d tokens from %s\n",
               windows->size(), absl::GetFlag(FLAGS_window), text_path.c_str());

  if (const std::string restat = absl::GetFlag(FLAGS_restat); !restat.empty()) {
    return Restat(restat, *bundle, *windows, bos, out);
  }

  // 1. Site statistics of the FP32 model.
  absl::StatusOr<CalibrationStats> stats =
      CollectSiteStats(fp32, *windows, {}, bos);
  if (!stats.ok()) return Fail(stats.status());

  v1::QuantPlan plan;
  plan.set_version(1);
  *plan.mutable_model() = bundle->fingerprint;
  plan.set_activation_mode(*mode);
  v1::CalibrationSettings* cal = plan.mutable_calibration();
  cal->set_text_file(text_path);
  cal->set_tokens(text_tokens);
  cal->set_window(absl::GetFlag(FLAGS_window));
  cal->set_windows(int(windows->size()));
  cal->set_tool_version(SPIKESERVE_VERSION);

  // 2. QFeP prefix.
  std::vector<int32_t> prefix = qfep_ids;
  if (qfep == "auto") {
    auto choice = SearchQfepPrefix(fp32, *stats, *windows, bos,
                                   absl::GetFlag(FLAGS_qfep_context));
    if (!choice.ok()) return Fail(choice.status());
    prefix = choice->prefix;
    plan.mutable_qfep()->set_spike_site(SiteKeyName(choice->spike_site));
    plan.mutable_qfep()->set_score(choice->score);
  }
  for (int32_t id : prefix) plan.mutable_qfep()->add_token_ids(id);
  if (!prefix.empty()) {
    absl::StatusOr<std::string> ptext = tok.Decode(prefix);
    if (ptext.ok()) plan.mutable_qfep()->set_text(*ptext);
  }

  // 3. Smoothing scales from statistics with the prefix in place.
  QuantOptions transforms;
  transforms.down_hadamard = absl::GetFlag(FLAGS_rotate);
  plan.mutable_rotation()->set_down_hadamard(transforms.down_hadamard);
  transforms.norm_hadamard = absl::GetFlag(FLAGS_rotate_norm);
  plan.mutable_rotation()->set_norm_hadamard(transforms.norm_hadamard);
  const CalibrationStats* final_stats = &*stats;
  absl::StatusOr<CalibrationStats> prefixed;
  if (!prefix.empty()) {
    prefixed = CollectSiteStats(fp32, *windows, prefix, bos);
    if (!prefixed.ok()) return Fail(prefixed.status());
    final_stats = &*prefixed;
  }
  if (smooth > 0) {
    plan.mutable_smoothing()->set_enabled(true);
    plan.mutable_smoothing()->set_alpha(smooth);
    for (const auto& [key, s] : final_stats->sites) {
      if (key.site == Site::kO) continue;
      transforms.smooth_scales[key] = SmoothScales(
          s.channel_max, fp32.site_source(key.layer, key.site), float(smooth));
    }
  }
  // Statistics of the transformed model (static ranges must see the
  // smoothed / rotated activations).
  std::unique_ptr<Model> transformed;
  if (smooth > 0 || transforms.down_hadamard || transforms.norm_hadamard) {
    auto t = fp32.WithQuant(transforms);
    if (!t.ok()) return Fail(t.status());
    transformed = *std::move(t);
    auto ts = CollectSiteStats(*transformed, *windows, prefix, bos);
    if (!ts.ok()) return Fail(ts.status());
    prefixed = *std::move(ts);
    final_stats = &*prefixed;
  }

  // Windows scored by the QFeM and W4 searches (prefixes of the first few).
  std::vector<std::vector<int32_t>> search_windows;
  for (const auto& w : *windows) {
    if (int(search_windows.size()) == absl::GetFlag(FLAGS_qfem_windows)) break;
    search_windows.emplace_back(
        w.begin(), w.begin() + std::min<size_t>(
                                   w.size(), absl::GetFlag(FLAGS_qfem_window)));
  }

  // The W8A8 version of the (transformed) model that QFeM and W4 auto
  // score, in the plan's activation mode: static scales are the ranges
  // this plan records (the largest token absmax of each served input), and
  // the spike guard as the plan sets it, so that the searches' KL is the
  // served plan's.
  QuantOptions w8a8_options = transforms;
  w8a8_options.w8a8 = true;
  switch (*mode) {
    case v1::PER_TOKEN_DYNAMIC:
      w8a8_options.mode = ActQuantMode::kPerTokenDynamic;
      break;
    case v1::PER_TENSOR_STATIC:
      w8a8_options.mode = ActQuantMode::kPerTensorStatic;
      for (const auto& [key, st] : final_stats->sites) {
        w8a8_options.static_absmax[key] = float(std::max(st.max_absmax, 1e-6));
      }
      w8a8_options.guard_factor = float(absl::GetFlag(FLAGS_guard));
      break;
    default:
      w8a8_options.mode = ActQuantMode::kPerTensorDynamic;
      break;
  }

  // 4. QFeM on the W8A8 version of the (transformed) model.
  std::set<SiteKey> qfem_sites;
  v1::QfemSettings* qs = plan.mutable_qfem();
  if (qfem == "auto") {
    auto w8a8 = fp32.WithQuant(w8a8_options);
    if (!w8a8.ok()) return Fail(w8a8.status());
    auto choice = SelectQfemSites(**w8a8, *stats, search_windows, bos,
                                  absl::GetFlag(FLAGS_qfem_tolerance),
                                  absl::GetFlag(FLAGS_qfem_max_sites), prefix);
    if (!choice.ok()) return Fail(choice.status());
    qfem_sites = choice->sites;
    qs->set_selection("auto");
    qs->set_alpha(choice->alpha);
    qs->set_loss_tolerance(absl::GetFlag(FLAGS_qfem_tolerance));
    std::fprintf(stderr,
                 "calibrate: QFeM auto: KL from FP32 %.4f -> %.4f with "
                 "%zu sites\n",
                 choice->w8a8_kl, choice->chosen_kl, qfem_sites.size());
  } else if (absl::StartsWith(qfem, "alpha=")) {
    for (const auto& [key, s] : stats->sites) {
      if (s.spike_ratio > qfem_alpha) qfem_sites.insert(key);
    }
    qs->set_selection("alpha");
    qs->set_alpha(qfem_alpha);
  } else if (qfem != "off") {
    qfem_sites = qfem_list;
    qs->set_selection("list");
  } else {
    qs->set_selection("off");
  }
  for (const SiteKey& k : qfem_sites) qs->add_modules(SiteKeyName(k));
  qs->set_bf16(absl::GetFlag(FLAGS_qfem_bf16));

  // 4b. Weight precision per quantized site.
  const bool w4_min = absl::GetFlag(FLAGS_w4_min);
  const bool w4_importance = absl::GetFlag(FLAGS_w4_importance);
  const bool w4_gptq = absl::GetFlag(FLAGS_w4_gptq);
  if (w4_gptq && *w4_group == kW4AsStored) {
    return Fail(absl::InvalidArgumentError(
        "--w4_gptq re-quantizes the weights; --w4_group stored serves the "
        "file's own"));
  }
  // GPTQ on the transformed weights with the transformed model's inputs
  // (the prefix in place): `sites` -> group.
  const Model& tm = transformed ? *transformed : fp32;
  GptqOptions gptq_options;
  gptq_options.with_min = w4_min;
  gptq_options.act_order = absl::GetFlag(FLAGS_gptq_act_order);
  gptq_options.damp = absl::GetFlag(FLAGS_gptq_damp);
  auto run_gptq = [&](const std::map<SiteKey, int>& sites) {
    return GptqSites(tm, sites, gptq_options, *windows, prefix, bos);
  };
  auto gptq = std::make_shared<W4WeightsMap>();
  std::map<SiteKey, int> w4_sites;
  if (weight_bits == "auto") {
    QuantOptions q = w8a8_options;
    q.fp32_sites = qfem_sites;
    q.w4_with_min = w4_min;
    if (w4_gptq) {
      // Every candidate quantized once; the search scores each as served.
      std::map<SiteKey, int> all;
      for (const auto& [key, s] : stats->sites) {
        if (!qfem_sites.count(key)) all[key] = *w4_group;
      }
      auto g = run_gptq(all);
      if (!g.ok()) return Fail(g.status());
      gptq->sites = *std::move(g);
      q.w4_given = gptq;
    }
    if (w4_importance) {
      for (const auto& [key, s] : final_stats->sites) {
        if (!qfem_sites.count(key)) {
          q.w4_importance[key] = s.channel_mean_square;
        }
      }
    }
    auto choice = SelectW4Sites(fp32, q, search_windows, bos, prefix, *w4_group,
                                absl::GetFlag(FLAGS_w4_tolerance),
                                absl::GetFlag(FLAGS_w4_fraction));
    if (!choice.ok()) return Fail(choice.status());
    w4_sites = choice->sites;
    std::fprintf(stderr,
                 "calibrate: W4 auto: %zu of %zu sites (%.0f%% of the "
                 "quantized weights) in W4A8, KL from FP32 %.4f -> %.4f\n",
                 w4_sites.size(), choice->ranked.size(),
                 100 * choice->w4_weight_fraction, choice->w8a8_kl,
                 choice->chosen_kl);
    for (const auto& [k, d] : choice->ranked) {
      std::fprintf(stderr, "calibrate:   %-10s KL +%.5f alone%s\n",
                   SiteKeyName(k).c_str(), d, w4_sites.count(k) ? ", W4" : "");
    }
  } else if (weight_bits == "4") {
    for (const auto& [key, s] : stats->sites) {
      if (!qfem_sites.count(key)) w4_sites[key] = *w4_group;
    }
  } else {
    for (const SiteKey& k : w4_list) {
      if (qfem_sites.count(k)) {
        return Fail(absl::InvalidArgumentError(
            absl::StrCat("--weight_bits: ", SiteKeyName(k),
                         " is a QFeM site (unquantized)")));
      }
      w4_sites[k] = *w4_group;
    }
  }

  // 4c. The W4A8 sites' GPTQ weights, written beside the plan.
  std::string w4_weights_path;
  if (w4_gptq && !w4_sites.empty()) {
    if (gptq->sites.empty()) {
      auto g = run_gptq(w4_sites);
      if (!g.ok()) return Fail(g.status());
      gptq->sites = *std::move(g);
    }
    std::map<SiteKey, W4Plain> chosen;
    for (const auto& [key, group] : w4_sites) {
      chosen[key] = std::move(gptq->sites.at(key));
    }
    gptq->sites.clear();
    std::string weights =
        absl::EndsWith(out, ".json") ? out.substr(0, out.size() - 5) : out;
    weights += ".w4.gguf";
    if (absl::Status s =
            WriteW4WeightsFile(weights, plan.model().hash(), chosen);
        !s.ok()) {
      return Fail(s);
    }
    plan.set_w4_weights(weights.substr(weights.find_last_of('/') + 1));
    w4_weights_path = weights;
    std::fprintf(stderr, "calibrate: GPTQ: %zu W4A8 sites -> %s\n",
                 chosen.size(), weights.c_str());
  }

  // 5. Per-site records.
  for (const auto& [key, s] : stats->sites) {
    v1::SiteStats* out_site = plan.add_sites();
    out_site->set_layer(key.layer);
    out_site->set_site(SiteName(key.site));
    // A site whose input is zero in half the rows of every window (dead or
    // pruned) has no spike statistics (median 0, no ratio): recorded as
    // absent, as the plan check wants, not as a plan the server refuses.
    if (s.median_absmax >= FLT_MIN && s.spike_ratio >= 1) {
      out_site->set_spike_ratio(s.spike_ratio);
      out_site->set_max_absmax(s.max_absmax);
      out_site->set_median_absmax(s.median_absmax);
    }
    const SiteCalibration& served = final_stats->sites.at(key);
    out_site->set_served_spike_ratio(served.spike_ratio);
    out_site->set_served_median_absmax(served.median_absmax);
    out_site->set_fp32(qfem_sites.count(key) > 0);
    if (auto w4 = w4_sites.find(key); w4 != w4_sites.end()) {
      out_site->set_weight_bits(4);
      out_site->set_weight_group(w4->second);
      out_site->set_weight_min(w4_min);
      if (w4_gptq) {
        out_site->set_weight_from_file(true);
      } else if (w4_importance) {
        for (float v : final_stats->sites.at(key).channel_mean_square) {
          out_site->add_weight_importance(v);
        }
      }
    }
    const double range = final_stats->sites.at(key).max_absmax;
    out_site->set_static_absmax(std::max(range, 1e-6));
    auto sm = transforms.smooth_scales.find(key);
    if (sm != transforms.smooth_scales.end()) {
      for (float v : sm->second) out_site->add_smooth_scales(v);
    }
  }
  if (*mode == v1::PER_TENSOR_STATIC) {
    plan.mutable_spike_guard()->set_factor(absl::GetFlag(FLAGS_guard));
  }

  // The server's own plan check, before the plan is written (the GPTQ
  // weights file, which it reads, by the path it was written to; a plan
  // refused takes its new weights file with it, so that an older plan of
  // the same name never loads codes made for another).
  v1::QuantPlan check = plan;
  if (!w4_weights_path.empty()) check.set_w4_weights(w4_weights_path);
  if (absl::StatusOr<AppliedPlan> applied =
          ApplyQuantPlan(check, bundle->fingerprint, c);
      !applied.ok()) {
    if (!w4_weights_path.empty()) std::remove(w4_weights_path.c_str());
    return Fail(absl::InternalError(
        absl::StrCat("the plan would be refused by the server, not written: ",
                     applied.status().message())));
  }
  if (absl::Status s = WriteQuantPlan(plan, out); !s.ok()) return Fail(s);
  std::string report = absl::GetFlag(FLAGS_report);
  if (report.empty()) {
    report = absl::EndsWith(out, ".json") ? out.substr(0, out.size() - 5) : out;
    report += ".report";
  }
  const std::string svg_path = report + ".svg";
  const std::string svg_name = svg_path.substr(svg_path.find_last_of('/') + 1);
  if (absl::Status s = WriteTextFileAtomically(
          report + ".md", SpikeReportMarkdown(plan, svg_name));
      !s.ok()) {
    return Fail(s);
  }
  if (absl::Status s = WriteTextFileAtomically(svg_path, SpikeHeatmapSvg(plan));
      !s.ok()) {
    return Fail(s);
  }
  std::printf("wrote %s, %s.md, %s\n", out.c_str(), report.c_str(),
              svg_path.c_str());
  return 0;
}

}  // namespace
}  // namespace spikeserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Calibrates a quant plan for --model on --text; writes --out.");
  spikeserve::ShowOwnFlagsInHelp();
  spikeserve::AcceptDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return spikeserve::Main();
}
