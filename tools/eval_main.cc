// spikeserve-eval: accuracy of a quantization scheme against FP32 on a
// text: perplexity, KL divergence of next-token distributions from FP32
// (mean, p99), top-1 agreement, tokens/s. Prints one JSON object.
//
//   spikeserve-eval --model PATH --text FILE [--plan PLAN.json]
//       [--scheme NAME] [--window 512] [--windows 0] --json
//
// Schemes: fp32, fp32+qfep, w8a8-token, w8a8-tensor, w8a8-tensor+qfem,
// w8a8-tensor+qfep, w8a8-tensor+qfem+qfep, w8a8-tensor+smooth,
// w8a8-tensor+smooth+qfem+qfep, w8a8-tensor+smoothrot,
// w8a8-static+qfem+qfep, and the w4a8 ones. A scheme takes only its named
// parts from --plan (QFeM modules, QFeP prefix, smoothing scales, static
// ranges; "rot" takes the plan's rotations: down_proj's input, and the norm
// outputs when the plan rotates them); without --scheme the plan is used as
// it is (as the server would).
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/flag_util.h"
#include "runtime/quant/evaluation.h"
#include "runtime/quant/quant_plan.h"
#include "runtime/serving/model_bundle.h"
#include "tools/text_input.h"

ABSL_FLAG(std::string, model, "", "GGUF model file (required).");
ABSL_FLAG(std::string, text, "", "Evaluation text file (required).");
ABSL_FLAG(
    std::string, lm_head, "fp32",
    "Output projection precision of the tested model: fp32, bf16 or int8.");
ABSL_FLAG(std::string, plan, "",
          "Quant plan (JSON) from spikeserve-calibrate.");
ABSL_FLAG(std::string, scheme, "",
          "Scheme name (see --help); default: the plan as is, or fp32.");
ABSL_FLAG(int, window, 512,
          "Window length, tokens (BOS or prefix not counted).");
ABSL_FLAG(int, windows, 0, "Windows evaluated (0 = all).");
ABSL_FLAG(std::string, kv_cache_type, "fp32",
          "KV cache of the evaluated scheme: fp32 or bf16 (the FP32 "
          "reference keeps an FP32 cache).");
ABSL_FLAG(bool, w4_min, false,
          "W4A8 weights re-quantized in asymmetric groups (a minimum per "
          "group, as GGUF's Q4_1).");
ABSL_FLAG(std::string, w4_group, "auto",
          "Group of the w4a8 schemes: auto, stored, 32, 64 or 128 (the "
          "server's --w4_group).");
ABSL_FLAG(bool, json, true, "Print one JSON object (the only output format).");

namespace spikeserve {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "spikeserve-eval: %s\n", s.ToString().c_str());
  return 1;
}

struct Scheme {
  bool w8a8 = false;
  ActQuantMode mode = ActQuantMode::kPerTensorDynamic;
  bool qfem = false, qfep = false, smooth = false, rotate = false;
  bool w4 = false;  // every quantized site W4A8 (--w4_group)
};

absl::StatusOr<Scheme> ParseScheme(const std::string& name) {
  static const std::pair<const char*, Scheme> kSchemes[] = {
      {"fp32", {}},
      // FP32 after the plan's QFeP prefix: what the prefix alone does to
      // the model (its perplexity against plain fp32's).
      {"fp32+qfep", {false, ActQuantMode::kPerTensorDynamic, false, true}},
      {"w8a8-token", {true, ActQuantMode::kPerTokenDynamic}},
      {"w8a8-tensor", {true}},
      {"w8a8-tensor+qfem", {true, ActQuantMode::kPerTensorDynamic, true}},
      {"w8a8-tensor+qfep",
       {true, ActQuantMode::kPerTensorDynamic, false, true}},
      {"w8a8-tensor+qfem+qfep",
       {true, ActQuantMode::kPerTensorDynamic, true, true}},
      {"w8a8-tensor+smooth",
       {true, ActQuantMode::kPerTensorDynamic, false, false, true}},
      {"w8a8-tensor+smooth+qfem+qfep",
       {true, ActQuantMode::kPerTensorDynamic, true, true, true}},
      {"w8a8-tensor+smoothrot",
       {true, ActQuantMode::kPerTensorDynamic, false, false, true, true}},
      {"w8a8-static+qfem+qfep",
       {true, ActQuantMode::kPerTensorStatic, true, true}},
      // Issue 24: 4-bit weights, per-token INT8 activations.
      {"w4a8",
       {true, ActQuantMode::kPerTokenDynamic, false, false, false, false,
        true}},
      {"w4a8+qfep",
       {true, ActQuantMode::kPerTokenDynamic, false, true, false, false, true}},
      {"w4a8+qfem+qfep",
       {true, ActQuantMode::kPerTokenDynamic, true, true, false, false, true}},
      {"w4a8+smoothrot+qfep",
       {true, ActQuantMode::kPerTokenDynamic, false, true, true, true, true}},
  };
  for (const auto& [n, s] : kSchemes) {
    if (name == n) return s;
  }
  std::string names;
  for (const auto& [n, s] : kSchemes)
    absl::StrAppend(&names, names.empty() ? "" : ", ", n);
  return absl::InvalidArgumentError(
      absl::StrCat("--scheme '", name, "' is unknown; use one of: ", names));
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

int Main() {
  const std::string model_path = absl::GetFlag(FLAGS_model);
  const std::string text_path = absl::GetFlag(FLAGS_text);
  const std::string plan_path = absl::GetFlag(FLAGS_plan);
  std::string scheme_name = absl::GetFlag(FLAGS_scheme);
  if (model_path.empty() || text_path.empty()) {
    return Fail(absl::InvalidArgumentError("--model and --text are required"));
  }
  // The FP32 reference streams its weights from the file: no FP32 copy.
  absl::StatusOr<ModelBundle> bundle =
      LoadModelBundle(model_path, QuantOptions{.fp32_streamed = true});
  if (!bundle.ok()) return Fail(bundle.status());
  const Model& fp32 = *bundle->model;
  const ModelConfig& c = fp32.config();

  // What the scheme runs.
  QuantOptions q;
  std::vector<int32_t> prefix;
  if (!plan_path.empty()) {
    absl::StatusOr<v1::QuantPlan> plan = ReadQuantPlan(plan_path);
    if (!plan.ok()) return Fail(plan.status());
    absl::StatusOr<AppliedPlan> applied =
        ApplyQuantPlan(*plan, bundle->fingerprint, c);
    if (!applied.ok()) return Fail(applied.status());
    q = applied->quant;
    prefix = applied->prefix;
    if (!scheme_name.empty()) {
      absl::StatusOr<Scheme> s = ParseScheme(scheme_name);
      if (!s.ok()) return Fail(s.status());
      // Static ranges are calibrated per site: keep them only for the
      // static scheme, which needs them for every INT8 site.
      if (s->mode == ActQuantMode::kPerTensorStatic &&
          q.static_absmax.empty()) {
        for (const v1::SiteStats& st : plan->sites()) {
          q.static_absmax[{st.layer(), *ParseSite(st.site())}] =
              float(std::max(st.static_absmax(), 1e-6));
        }
      }
      if ((s->smooth && q.smooth_scales.empty()) ||
          (s->rotate && !q.down_hadamard)) {
        return Fail(absl::FailedPreconditionError(absl::StrCat(
            "scheme ", scheme_name, " needs a plan calibrated with --smooth",
            s->rotate ? " and --rotate" : "")));
      }
      if (s->qfep && prefix.empty()) {
        return Fail(absl::FailedPreconditionError(absl::StrCat(
            "scheme ", scheme_name, " needs a plan with a QFeP prefix")));
      }
      // What the plan calibrated on its transformed inputs (after its
      // prefix, smoothing and rotations) does not fit a scheme that drops
      // one of them: static ranges are refused (the plain inputs' spikes
      // overflow them: perplexity 36,927 against 7.58 for a plan calibrated
      // without), the 4-bit weights' GPTQ codes and importance are dropped
      // (those sites are then re-quantized from the file's weights).
      std::vector<std::string> dropped;
      if (!s->smooth && !q.smooth_scales.empty()) {
        dropped.push_back("smoothing");
      }
      if (!s->rotate && (q.down_hadamard || q.norm_hadamard)) {
        dropped.push_back("rotation");
      }
      if (!s->qfep && !prefix.empty()) dropped.push_back("the QFeP prefix");
      if (!dropped.empty()) {
        const std::string what = absl::StrJoin(dropped, ", ");
        if (s->mode == ActQuantMode::kPerTensorStatic) {
          return Fail(absl::FailedPreconditionError(absl::StrCat(
              "scheme ", scheme_name, " drops the plan's ", what,
              ", on which its static ranges were calibrated; use a plan "
              "calibrated without them, or a scheme that keeps them")));
        }
        if (s->w4 && (q.w4_given != nullptr || !q.w4_importance.empty())) {
          std::fprintf(stderr,
                       "spikeserve-eval: scheme %s drops the plan's %s: its "
                       "4-bit sites are re-quantized to nearest, without "
                       "the plan's GPTQ weights or channel importance\n",
                       scheme_name.c_str(), what.c_str());
          q.w4_given = nullptr;
          q.w4_importance.clear();
        }
      }
      q.w8a8 = s->w8a8;
      q.mode = s->mode;
      if (!s->qfem) q.fp32_sites.clear();
      if (!s->qfep) prefix.clear();
      if (!s->smooth) q.smooth_scales.clear();
      q.down_hadamard = s->rotate;
      q.norm_hadamard = s->rotate && q.norm_hadamard;
      if (s->mode != ActQuantMode::kPerTensorStatic) q.guard_factor = 0;
      q.w4_everywhere = s->w4;
      if (!s->w4) q.w4_sites.clear();
    }
  } else {
    if (scheme_name.empty()) scheme_name = "fp32";
    absl::StatusOr<Scheme> s = ParseScheme(scheme_name);
    if (!s.ok()) return Fail(s.status());
    if (s->qfem || s->qfep || s->smooth ||
        s->mode == ActQuantMode::kPerTensorStatic) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("scheme ", scheme_name, " needs --plan")));
    }
    q.w8a8 = s->w8a8;
    q.mode = s->mode;
    q.w4_everywhere = s->w4;
  }
  absl::StatusOr<int> w4_group = ParseW4Group(absl::GetFlag(FLAGS_w4_group));
  if (!w4_group.ok()) return Fail(w4_group.status());
  q.w4_everywhere_group = *w4_group;
  q.w4_with_min = absl::GetFlag(FLAGS_w4_min);
  absl::StatusOr<LmHeadPrecision> lm_head =
      ParseLmHeadPrecision(absl::GetFlag(FLAGS_lm_head));
  if (!lm_head.ok()) return Fail(lm_head.status());
  q.lm_head = *lm_head;
  const std::string kv_type = absl::GetFlag(FLAGS_kv_cache_type);
  if (kv_type != "fp32" && kv_type != "bf16") {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--kv_cache_type must be fp32 or bf16, got \"", kv_type, "\"")));
  }
  q.kv_bf16 = kv_type == "bf16";
  std::unique_ptr<Model> scheme_model;
  if (q.w8a8 || !q.smooth_scales.empty() || q.down_hadamard ||
      q.norm_hadamard || q.lm_head != LmHeadPrecision::kFp32 || q.kv_bf16) {
    auto m = fp32.WithQuant(q);
    if (!m.ok()) return Fail(m.status());
    scheme_model = *std::move(m);
  }
  const Model& test_model = scheme_model ? *scheme_model : fp32;

  absl::StatusOr<std::string> text = ReadTextFile(text_path);
  if (!text.ok()) return Fail(text.status());
  const int window = absl::GetFlag(FLAGS_window);
  auto windows = TextWindows(*bundle->tokenizer, *text, window,
                             absl::GetFlag(FLAGS_windows));
  if (!windows.ok()) return Fail(windows.status());
  const int32_t bos =
      bundle->tokenizer->bos_id() >= 0 ? bundle->tokenizer->bos_id() : 0;
  // The reference: FP32 under the same context (BOS, or the same prefix).
  EvalSide test{&test_model, {}, prefix};
  EvalSide ref{&fp32, {}, prefix};
  absl::StatusOr<EvalResult> r = Evaluate(test, &ref, *windows, bos);
  if (!r.ok()) return Fail(r.status());
  std::printf(
      "{\"scheme\": %s, \"plan\": %s, \"text\": %s, \"window\": %d, "
      "\"windows\": %zu, \"tokens\": %lld, \"perplexity\": %.4f, "
      "\"nll\": %.5f, \"kl_mean\": %.5f, \"kl_p99\": %.5f, "
      "\"top1_agreement\": %.4f, \"tokens_per_second\": %.1f, "
      "\"qfem_sites\": %zu, \"qfep_prefix\": %zu, \"int8_impl\": %s}\n",
      JsonString(scheme_name.empty() ? "plan" : scheme_name).c_str(),
      JsonString(plan_path).c_str(), JsonString(text_path).c_str(), window,
      windows->size(), static_cast<long long>(r->tokens), r->perplexity, r->nll,
      r->kl_mean, r->kl_p99, r->top1_agreement, r->tokens_per_second,
      q.w8a8 ? q.fp32_sites.size() : 0, prefix.size(),
      JsonString(test_model.int8_impl()).c_str());
  return 0;
}

}  // namespace
}  // namespace spikeserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Evaluates a quantization scheme of --model on --text against FP32.");
  spikeserve::ShowOwnFlagsInHelp();
  spikeserve::AcceptDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return spikeserve::Main();
}
