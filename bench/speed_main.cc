// spikeserve-speed: the runtime's speed on the two measurements llama.cpp's
// llama-bench reports, so bench/compare_llamacpp.py can put them side by
// side in one process each, alternating:
//   pp: prompt processing, `--prompt_tokens` tokens in one forward from an
//       empty sequence (after the plan's QFeP prefix, if any);
//   tg: text generation, `--decode_tokens` single-token forwards, each with
//       its logits (lm_head) and a greedy pick, from an empty sequence or
//       after `--decode_depth` cached positions (llama-bench's -d; the
//       depth's prompt is not timed).
// Token ids are pseudo-random (only speed counts). Prints one JSON object
// per measurement: {"test":"pp","tokens":512,"seconds":..,"tokens_per_s":..}.
//
//   spikeserve-speed --model PATH [--plan PLAN.json | --w8a8] [--lm_head auto]
//       [--repetitions N]            N rounds of pp then tg, then exits
//   spikeserve-speed ... --stdin     reads "pp" / "tg" / "quit" lines
//
// Threads follow OMP_NUM_THREADS (oneDNN's OpenMP runtime).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "base/flag_util.h"
#include "runtime/model/shared_prefix.h"
#include "runtime/quant/quant_plan.h"
#include "runtime/serving/model_bundle.h"

ABSL_FLAG(std::string, model, "", "GGUF model file (required).");
ABSL_FLAG(std::string, plan, "",
          "Quantization plan (JSON); without it --w8a8 decides.");
ABSL_FLAG(bool, w8a8, false,
          "Without a plan: W8A8 with per-token dynamic activation scales "
          "(the server's --quant w8a8; no QFeM/QFeP); false = FP32.");
ABSL_FLAG(bool, w4a8, false,
          "Without a plan: W4A8 at every quantized site (the server's "
          "--quant w4a8); implies --w8a8.");
ABSL_FLAG(std::string, w4_group, "auto",
          "With --w4a8: auto, stored, 32, 64 or 128 (the server's "
          "--w4_group).");
ABSL_FLAG(std::string, lm_head, "auto",
          "lm_head precision: auto (int8), fp32, "
          "bf16 or int8.");
ABSL_FLAG(int, prompt_tokens, 512, "Tokens of the pp measurement.");
ABSL_FLAG(int, decode_tokens, 128, "Tokens of the tg measurement.");
ABSL_FLAG(int, decode_depth, 0,
          "Positions already in the cache when tg starts (an untimed prompt "
          "of that many tokens first; llama-bench's -d).");
ABSL_FLAG(int, repetitions, 3, "Rounds of pp + tg (without --stdin).");
ABSL_FLAG(bool, one_region, true,
          "Decode steps in one parallel region where the kernels allow "
          "(ForwardOptions::one_region); false: one region per parallel "
          "step, to measure the difference.");
ABSL_FLAG(bool, stdin, false, "Run the measurements named on stdin.");

namespace spikeserve {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "spikeserve-speed: %s\n", s.ToString().c_str());
  return 1;
}

absl::StatusOr<ModelBundle> Load(const std::string& model_path) {
  QuantOptions base;
  absl::StatusOr<LmHeadPrecision> lm_head =
      ParseLmHeadPrecision(absl::GetFlag(FLAGS_lm_head));
  if (!lm_head.ok()) return lm_head.status();
  base.lm_head = *lm_head;
  base.warmup_rows = absl::GetFlag(FLAGS_prompt_tokens);
  const std::string plan_path = absl::GetFlag(FLAGS_plan);
  if (plan_path.empty()) {
    base.w4_everywhere = absl::GetFlag(FLAGS_w4a8);
    absl::StatusOr<int> group = ParseW4Group(absl::GetFlag(FLAGS_w4_group));
    if (!group.ok()) return group.status();
    base.w4_everywhere_group = *group;
    base.w8a8 = absl::GetFlag(FLAGS_w8a8) || base.w4_everywhere;
    base.mode = ActQuantMode::kPerTokenDynamic;
    return LoadModelBundle(model_path, base);
  }
  absl::StatusOr<v1::QuantPlan> plan = ReadQuantPlan(plan_path);
  if (!plan.ok()) return plan.status();
  return LoadModelBundle(model_path, *plan, base);
}

class Runner {
 public:
  Runner(const Model& model, std::unique_ptr<KvPool> pool,
         std::unique_ptr<SharedPrefix> prefix)
      : model_(model), pool_(std::move(pool)), prefix_(std::move(prefix)) {
    std::mt19937 rng(1);
    tokens_.resize(std::max({absl::GetFlag(FLAGS_prompt_tokens),
                             absl::GetFlag(FLAGS_decode_depth), 1}));
    for (auto& t : tokens_) t = int32_t(rng() % model.config().vocab_size);
  }

  // Seconds for one measurement, or an error.
  absl::StatusOr<double> Prompt() {
    SequenceKv kv(pool_.get());
    if (prefix_) {
      if (absl::Status s = prefix_->AttachTo(&kv); !s.ok()) return s;
    }
    const absl::Span<const int32_t> prompt(tokens_.data(),
                                           absl::GetFlag(FLAGS_prompt_tokens));
    const auto t0 = Clock::now();
    if (absl::Status s = model_.Forward({{&kv, prompt, false}}, &logits_);
        !s.ok())
      return s;
    return Seconds(t0);
  }

  absl::StatusOr<double> Decode(int n) {
    SequenceKv kv(pool_.get());
    if (prefix_) {
      if (absl::Status s = prefix_->AttachTo(&kv); !s.ok()) return s;
    }
    const int depth = absl::GetFlag(FLAGS_decode_depth);
    if (depth > 0) {
      const absl::Span<const int32_t> prompt(tokens_.data(), depth);
      if (absl::Status s = model_.Forward({{&kv, prompt, false}}, &logits_);
          !s.ok())
        return s;
    }
    int32_t next = tokens_[0];
    ForwardOptions opt;
    opt.one_region = absl::GetFlag(FLAGS_one_region);
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      const int32_t one[1] = {next};
      if (absl::Status s = model_.Forward({{&kv, one, false}}, &logits_, opt);
          !s.ok())
        return s;
      next = int32_t(std::max_element(logits_.begin(), logits_.end()) -
                     logits_.begin());
    }
    return Seconds(t0);
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double Seconds(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  const Model& model_;
  std::unique_ptr<KvPool> pool_;
  std::unique_ptr<SharedPrefix> prefix_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
};

// Weight bytes one decode step reads: every layer's matrices at their
// precision (INT8 sites 1 byte, QFeM sites 2 (BF16) or 4 (FP32)) plus
// lm_head; the embedding row and norms are negligible. Divided into the
// machine's memory bandwidth it bounds decode speed from above.
double DecodeWeightBytes(const Model& m) {
  const ModelConfig& c = m.config();
  const double h = c.hidden, f = c.ffn;
  double bytes = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    for (Site site : kAllSites) {
      double params = 0;
      switch (site) {
        case Site::kQkv:
          params = (c.q_dim() + 2.0 * c.kv_dim()) * h;
          break;
        case Site::kO:
          params = c.q_dim() * h;
          break;
        case Site::kGateUp:
          params = 2 * f * h;
          break;
        case Site::kDown:
          params = f * h;
          break;
      }
      // W4A8: half a byte per weight, a half scale per group and, with
      // minimums, a half minimum per group too.
      const int group = m.W4Group({l, site});
      const double group_bytes = m.W4HasMin({l, site}) ? 4.0 : 2.0;
      const double per = group > 0             ? 0.5 + group_bytes / group
                         : m.IsInt8({l, site}) ? 1
                         : m.quant().qfem_bf16 ? 2
                                               : 4;
      bytes += params * per;
    }
  }
  const LmHeadPrecision head = m.quant().lm_head;
  bytes += double(c.vocab_size) * h *
           (head == LmHeadPrecision::kInt8   ? 1
            : head == LmHeadPrecision::kBf16 ? 2
                                             : 4);
  return bytes;
}

// Runs "pp" or "tg" and prints its JSON line; false on an unknown name.
bool RunOne(Runner& r, const std::string& test) {
  const int n = test == "pp" ? absl::GetFlag(FLAGS_prompt_tokens)
                             : absl::GetFlag(FLAGS_decode_tokens);
  absl::StatusOr<double> s;
  if (test == "pp") {
    s = r.Prompt();
  } else if (test == "tg") {
    s = r.Decode(n);
  } else {
    std::fprintf(stderr, "spikeserve-speed: unknown test '%s' (pp, tg)\n",
                 test.c_str());
    return false;
  }
  if (!s.ok()) {
    Fail(s.status());
    return false;
  }
  std::printf(
      "{\"test\":\"%s\",\"tokens\":%d,\"seconds\":%.6f,"
      "\"tokens_per_s\":%.3f}\n",
      test.c_str(), n, *s, n / *s);
  std::fflush(stdout);
  return true;
}

int Main() {
  const std::string model_path = absl::GetFlag(FLAGS_model);
  if (model_path.empty()) {
    return Fail(absl::InvalidArgumentError("--model is required"));
  }
  const int pp = absl::GetFlag(FLAGS_prompt_tokens);
  const int tg = absl::GetFlag(FLAGS_decode_tokens);
  const int depth = absl::GetFlag(FLAGS_decode_depth);
  if (pp < 1 || tg < 1 || depth < 0) {
    return Fail(absl::InvalidArgumentError(
        "--prompt_tokens and --decode_tokens must be >= 1, --decode_depth "
        ">= 0"));
  }
  const auto t_load = std::chrono::steady_clock::now();
  absl::StatusOr<ModelBundle> bundle = Load(model_path);
  if (!bundle.ok()) return Fail(bundle.status());
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load)
          .count();
  const Model& model = *bundle->model;
  const int prefix_len = int(bundle->qfep_prefix.size());
  const int block_tokens = 16;
  const int blocks =
      (prefix_len + std::max(pp, depth + tg) + block_tokens - 1) /
          block_tokens +
      2;
  absl::StatusOr<std::unique_ptr<KvPool>> pool = model.NewKvPool(blocks);
  if (!pool.ok()) return Fail(pool.status());
  std::unique_ptr<SharedPrefix> prefix;
  if (prefix_len > 0) {
    auto p = SharedPrefix::Compute(model, pool->get(), bundle->qfep_prefix);
    if (!p.ok()) return Fail(p.status());
    prefix = *std::move(p);
  }
  // As the server does once the prefix is computed (RSS comparable).
  bundle->model->ReleaseUnquantizedWeights();
  std::printf(
      "{\"model\":\"%s\",\"int8_impl\":\"%s\",\"qfep_prefix\":%d,"
      "\"decode_weight_bytes\":%.0f,\"load_s\":%.2f}\n",
      model.config().name.c_str(), model.int8_impl().c_str(), prefix_len,
      DecodeWeightBytes(model), load_s);
  Runner runner(model, *std::move(pool), std::move(prefix));
  // One untimed round: first-touch of the KV pool and of oneDNN's scratch.
  if (auto s = runner.Prompt(); !s.ok()) return Fail(s.status());
  if (auto s = runner.Decode(4); !s.ok()) return Fail(s.status());
  if (absl::GetFlag(FLAGS_stdin)) {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line == "quit") break;
      if (!RunOne(runner, line)) return 1;
    }
    return 0;
  }
  for (int i = 0; i < absl::GetFlag(FLAGS_repetitions); ++i) {
    if (!RunOne(runner, "pp") || !RunOne(runner, "tg")) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace spikeserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Prompt-processing and decode speed of the runtime (llama-bench's pp "
      "and tg). See bench/compare_llamacpp.py.");
  spikeserve::ShowOwnFlagsInHelp();
  spikeserve::AcceptDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return spikeserve::Main();
}
