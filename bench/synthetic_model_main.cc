// spikeserve-synthetic-model: writes a GGUF file with random weights of a
// real model's shape (the tests' fixture generator, scaled up), for speed
// and memory measurements where only the shapes and types count.
//
//   spikeserve-synthetic-model --shape llama-3.1-8b --type q4_k_m --out PATH
//
// Both engines read the same file: llama.cpp as is, spikeserve converted to
// its own INT8 copy per output channel. Writing holds the file in memory
// (5 GB for the 8B shape as Q4_K_M, 8.5 GB as Q8_0).
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "base/flag_util.h"
#include "tests/fixtures/gguf_builder.h"

ABSL_FLAG(std::string, shape, "tinyllama-1.1b",
          "smollm2-135m, tinyllama-1.1b, llama-3.2-1b, llama-3.2-3b, "
          "llama-3.1-8b or qwen2.5-0.5b.");
ABSL_FLAG(std::string, type, "q8_0",
          "Weight matrices: q8_0, q4_k_m (llama.cpp's mix of Q4_K and Q6_K; "
          "random codes) or f32.");
ABSL_FLAG(std::string, out, "", "Output path (required).");
ABSL_FLAG(uint32_t, seed, 1, "Random seed.");

namespace spikeserve {
namespace {

// LLaMA 3's "llama3" RoPE scaling as llama.cpp's converter turns it into
// rope_freqs.weight: wavelengths under original_context / high_freq_factor
// keep their frequency, those over original_context / low_freq_factor are
// slowed by `factor`, and those between are interpolated.
std::vector<float> Llama3RopeFactors(int head_dim, float base, float factor) {
  const double old_context = 8192, low = 1, high = 4;
  std::vector<float> out;
  for (int i = 0; i < head_dim; i += 2) {
    const double freq = 1.0 / std::pow(double(base), double(i) / head_dim);
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < old_context / high) {
      out.push_back(1.0f);
    } else if (wavelen > old_context / low) {
      out.push_back(factor);
    } else {
      const double smooth = (old_context / wavelen - low) / (high - low);
      out.push_back(float(1.0 / ((1 - smooth) / factor + smooth)));
    }
  }
  return out;
}

bool ShapeByName(const std::string& name, testing::TinyLlamaSpec* s) {
  // Llama 3.x: 128256 tokens, head dim 128, 8 KV heads, base 500000.
  auto llama3 = [&](int layers, int hidden, int heads, int ffn, bool tied,
                    float factor) {
    s->layers = layers, s->hidden = hidden, s->heads = heads, s->kv_heads = 8;
    s->ffn = ffn, s->vocab = 128256, s->context = 131072, s->tied = tied;
    s->rope_base = 500000.f;
    s->rope_freq_factors = Llama3RopeFactors(hidden / heads, 500000.f, factor);
    if (tied) s->embd_scale = 0.05f;
  };
  if (name == "llama-3.1-8b") {  // Llama-3.1-8B-Instruct
    llama3(32, 4096, 32, 14336, /*tied=*/false, 8.f);
    return true;
  }
  if (name == "llama-3.2-3b") {  // Llama-3.2-3B-Instruct
    llama3(28, 3072, 24, 8192, /*tied=*/true, 32.f);
    return true;
  }
  if (name == "llama-3.2-1b") {  // Llama-3.2-1B-Instruct
    llama3(16, 2048, 32, 8192, /*tied=*/true, 32.f);
    return true;
  }
  if (name == "qwen2.5-0.5b") {  // Qwen2.5-0.5B-Instruct
    s->arch = "qwen2";
    s->layers = 24, s->hidden = 896, s->heads = 14, s->kv_heads = 2;
    s->ffn = 4864, s->vocab = 151936, s->context = 32768, s->tied = true;
    s->rope_base = 1000000.f;
    s->embd_scale = 0.05f;
    return true;
  }
  if (name == "tinyllama-1.1b") {  // TinyLlama-1.1B-Chat-v1.0
    s->layers = 22, s->hidden = 2048, s->heads = 32, s->kv_heads = 4;
    s->ffn = 5632, s->vocab = 32000, s->context = 2048, s->tied = false;
    s->rope_base = 10000.f;
    return true;
  }
  if (name == "smollm2-135m") {  // SmolLM2-135M-Instruct
    s->layers = 30, s->hidden = 576, s->heads = 9, s->kv_heads = 3;
    s->ffn = 1536, s->vocab = 49152, s->context = 2048, s->tied = true;
    s->rope_base = 100000.f;
    return true;
  }
  return false;
}

int Main() {
  testing::TinyLlamaSpec spec;
  const std::string shape = absl::GetFlag(FLAGS_shape);
  if (!ShapeByName(shape, &spec)) {
    std::fprintf(stderr,
                 "spikeserve-synthetic-model: unknown --shape '%s' "
                 "(see --help)\n",
                 shape.c_str());
    return 1;
  }
  const std::string type = absl::GetFlag(FLAGS_type);
  if (type == "q8_0") {
    spec.weight_type = testing::kGgmlQ8_0;
  } else if (type == "q4_k_m") {
    spec.weight_type = testing::kMixQ4_K_M;
  } else if (type == "f32") {
    spec.weight_type = testing::kGgmlF32;
  } else {
    std::fprintf(stderr,
                 "spikeserve-synthetic-model: unknown --type '%s' (q8_0, "
                 "q4_k_m, f32)\n",
                 type.c_str());
    return 1;
  }
  spec.seed = absl::GetFlag(FLAGS_seed);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "spikeserve-synthetic-model: --out is required\n");
    return 1;
  }
  testing::GgufBuilder b = testing::TinyLlama(spec);
  b.SetString("general.name", "synthetic-" + shape);
  if (!b.WriteFile(out)) {
    std::fprintf(stderr, "spikeserve-synthetic-model: cannot write %s\n",
                 out.c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace spikeserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Writes a random-weight LLaMA GGUF of a named model's shape.");
  spikeserve::ShowOwnFlagsInHelp();
  spikeserve::AcceptDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return spikeserve::Main();
}
