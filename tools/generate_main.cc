// spikeserve-generate: prints a continuation of a prompt with the runtime
// alone (no server). For newcomers and quick checks.
//
//   spikeserve-generate --model PATH --prompt TEXT [--max_new_tokens N]
//       [--temperature T] [--top_k K] [--top_p P] [--seed S] [--chat]
#include <chrono>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "base/flag_util.h"
#include "runtime/serving/model_bundle.h"
#include "runtime/serving/sampler.h"

ABSL_FLAG(std::string, model, "", "Path of a GGUF model file (required).");
ABSL_FLAG(std::string, prompt, "", "Prompt text (required).");
ABSL_FLAG(int, max_new_tokens, 64, "Tokens to generate, >= 1.");
ABSL_FLAG(float, temperature, 0.0f, "0 = greedy; else sampling temperature.");
ABSL_FLAG(int, top_k, 0, "Keep the k most likely tokens; 0 = off.");
ABSL_FLAG(float, top_p, 1.0f, "Nucleus mass in (0, 1]; 1 = off.");
ABSL_FLAG(uint64_t, seed, 0, "Sampling seed.");
ABSL_FLAG(bool, chat, false,
          "Wrap the prompt as one user turn of a ChatML conversation "
          "(<|im_start|>user ... <|im_end|>), as instruct models expect.");
ABSL_FLAG(bool, stop_at_eos, true, "Stop at an end-of-generation token.");

namespace spikeserve {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "spikeserve-generate: %s\n", s.ToString().c_str());
  return 1;
}

int Main() {
  const std::string model_path = absl::GetFlag(FLAGS_model);
  std::string prompt = absl::GetFlag(FLAGS_prompt);
  if (model_path.empty() || prompt.empty()) {
    return Fail(
        absl::InvalidArgumentError("--model and --prompt are required"));
  }
  const int max_new = absl::GetFlag(FLAGS_max_new_tokens);
  if (max_new < 1) {
    return Fail(absl::InvalidArgumentError("--max_new_tokens must be >= 1"));
  }
  SamplingParams sp;
  sp.temperature = absl::GetFlag(FLAGS_temperature);
  sp.top_k = absl::GetFlag(FLAGS_top_k);
  sp.top_p = absl::GetFlag(FLAGS_top_p);
  sp.seed = absl::GetFlag(FLAGS_seed);
  if (absl::Status s = ValidateSamplingParams(sp); !s.ok()) return Fail(s);

  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<ModelBundle> bundle = LoadModelBundle(model_path);
  if (!bundle.ok()) return Fail(bundle.status());
  const Model& model = *bundle->model;
  const Tokenizer& tok = *bundle->tokenizer;
  if (absl::GetFlag(FLAGS_chat)) {
    prompt = absl::StrCat("<|im_start|>user\n", prompt,
                          "<|im_end|>\n<|im_start|>assistant\n");
  }
  absl::StatusOr<std::vector<int32_t>> ids =
      tok.Encode(prompt, /*add_special=*/true, /*parse_special=*/true);
  if (!ids.ok()) return Fail(ids.status());
  const int total = int(ids->size()) + max_new;
  if (total > model.config().context_length) {
    return Fail(absl::OutOfRangeError(
        absl::StrCat("prompt (", ids->size(),
                     " tokens) + max_new_tokens exceeds the "
                     "context length ",
                     model.config().context_length)));
  }
  absl::StatusOr<std::unique_ptr<KvPool>> pool =
      model.NewKvPool(total / 16 + 2, 16);
  if (!pool.ok()) return Fail(pool.status());
  SequenceKv kv(pool->get());
  const auto t1 = std::chrono::steady_clock::now();

  std::vector<float> logits;
  if (absl::Status s = model.Forward({{&kv, *ids, false}}, &logits); !s.ok()) {
    return Fail(s);
  }
  const auto t2 = std::chrono::steady_clock::now();
  Sampler sampler(sp, *ids);
  StreamingDetokenizer detok(&tok, /*render_special=*/false);
  std::fputs(prompt.c_str(), stdout);
  int generated = 0;
  for (; generated < max_new; ++generated) {
    const int32_t next = sampler.Sample(logits).id;
    if (absl::GetFlag(FLAGS_stop_at_eos) && tok.IsEndOfGeneration(next)) break;
    absl::StatusOr<std::string> text = detok.Push(next);
    if (!text.ok()) return Fail(text.status());
    std::fputs(text->c_str(), stdout);
    std::fflush(stdout);
    if (generated + 1 == max_new) {
      ++generated;
      break;
    }
    if (absl::Status s = model.Forward({{&kv, {next}, false}}, &logits);
        !s.ok()) {
      return Fail(s);
    }
  }
  std::fputs(detok.Flush().c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  const auto t3 = std::chrono::steady_clock::now();
  auto secs = [](auto a, auto b) {
    return std::chrono::duration<double>(b - a).count();
  };
  std::fprintf(stderr,
               "[load %.2f s | prompt %zu tokens in %.3f s (%.1f tok/s) | "
               "generated %d tokens in %.3f s (%.1f tok/s)]\n",
               secs(t0, t1), ids->size(), secs(t1, t2),
               ids->size() / secs(t1, t2), generated, secs(t2, t3),
               generated / secs(t2, t3));
  return 0;
}

}  // namespace
}  // namespace spikeserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Prints a continuation of --prompt using the model at --model.");
  spikeserve::ShowOwnFlagsInHelp();
  spikeserve::AcceptDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return spikeserve::Main();
}
