// spikeserve-synthetic-model: writes a LLaMA-architecture GGUF file with
// random weights of a real model's shape (the tests' fixture generator,
// scaled up), for speed measurements where only the shapes count.
//
//   spikeserve-synthetic-model --shape tinyllama-1.1b --type q8_0 --out PATH
//
// Q8_0 is what llama.cpp runs as its 8-bit type, so both engines read the
// same file: llama.cpp as is, spikeserve re-quantized per output channel.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "tests/fixtures/gguf_builder.h"

ABSL_FLAG(std::string, shape, "tinyllama-1.1b",
          "tinyllama-1.1b or smollm2-135m.");
ABSL_FLAG(std::string, type, "q8_0", "Weight matrices: q8_0 or f32.");
ABSL_FLAG(std::string, out, "", "Output path (required).");
ABSL_FLAG(uint32_t, seed, 1, "Random seed.");

namespace spikeserve {
namespace {

bool ShapeByName(const std::string& name, testing::TinyLlamaSpec* s) {
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
                 "(tinyllama-1.1b, smollm2-135m)\n",
                 shape.c_str());
    return 1;
  }
  const std::string type = absl::GetFlag(FLAGS_type);
  if (type != "q8_0" && type != "f32") {
    std::fprintf(stderr,
                 "spikeserve-synthetic-model: unknown --type '%s' (q8_0, "
                 "f32)\n",
                 type.c_str());
    return 1;
  }
  spec.weight_type = type == "q8_0" ? testing::kGgmlQ8_0 : testing::kGgmlF32;
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
  absl::ParseCommandLine(argc, argv);
  return spikeserve::Main();
}
