// Writes the committed seed corpora (fuzz/corpus/<target>/): small valid
// inputs each fuzzer starts from. Regenerate with
//   build-fuzz/fuzz/write_seeds fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/gguf/gguf_reader.h"
#include "runtime/model/model_config.h"
#include "runtime/quant/quant_plan.h"
#include "spikeserve/v1/generation.pb.h"
#include "tests/fixtures/gguf_builder.h"

namespace {

void Write(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace spikeserve;
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_seeds CORPUS_DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  // The smallest complete model: 1 layer, hidden 8.
  const std::string gguf = testing::TinyLlama({.layers = 1,
                                               .hidden = 8,
                                               .heads = 2,
                                               .kv_heads = 1,
                                               .ffn = 8,
                                               .vocab = 260,
                                               .context = 32})
                               .Build();
  Write(dir + "/gguf/tiny-model.gguf", gguf);
  Write(dir + "/gguf/header-only.gguf", gguf.substr(0, 64));

  Write(dir + "/tokenizer/ascii.txt", "Hello, world! It's 2026: 12345 tokens.");
  Write(dir + "/tokenizer/utf8.txt",
        "Gr\xC3\xBC\xC3\x9F"
        "e \xE6\x9D\xB1\xE4\xBA\xAC \xF0\x9F\x98\x80");
  Write(dir + "/tokenizer/special.txt", "<|bos|>a<|eos|>\n\t  b");

  // A plan for the fuzzers' tiny model (layers 2, hidden 64).
  const std::string tiny =
      testing::TinyLlama({.layers = 2, .context = 256}).Build();
  auto file = GgufFile::FromBuffer(
      reinterpret_cast<const uint8_t*>(tiny.data()), tiny.size());
  auto config = ReadModelConfig(**file);
  v1::QuantPlan plan;
  plan.set_version(1);
  *plan.mutable_model() = FingerprintModel(**file, *config);
  plan.set_activation_mode(v1::PER_TENSOR_STATIC);
  for (int l = 0; l < 2; ++l) {
    for (const char* site : {"qkv", "o", "gate_up", "down"}) {
      v1::SiteStats* s = plan.add_sites();
      s->set_layer(l);
      s->set_site(site);
      s->set_static_absmax(3.5);
      s->set_median_absmax(1.0);
      s->set_spike_ratio(4.0);
    }
  }
  plan.mutable_qfem()->add_modules("1.down");
  plan.mutable_qfep()->add_token_ids(298);
  plan.mutable_qfep()->add_token_ids(65);
  const std::string path = dir + "/quant_plan/plan.json";
  std::filesystem::create_directories(dir + "/quant_plan");
  if (!WriteQuantPlan(plan, path).ok()) return 1;

  v1::GenerateRequest r;
  r.set_text("hello world");
  r.mutable_sampling()->set_temperature(0.7f);
  r.mutable_sampling()->set_top_p(0.9f);
  r.mutable_stopping()->set_max_new_tokens(16);
  r.mutable_stopping()->add_stop_sequences("\n");
  r.set_top_n_tokens(3);
  Write(dir + "/request/text.pb", r.SerializeAsString());
  v1::GenerateRequest t;
  t.set_request_id("req-1");
  for (int i = 0; i < 8; ++i) t.mutable_tokens()->add_ids(60 + i);
  t.mutable_stopping()->add_stop_token_ids(299);
  Write(dir + "/request/tokens.pb", t.SerializeAsString());
  return 0;
}
