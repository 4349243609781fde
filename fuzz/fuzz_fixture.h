// What the fuzz targets share: a tiny model (GGUF written by the test
// fixtures), its tokenizer, config and fingerprint, built once.
#ifndef SPIKESERVE_FUZZ_FUZZ_FIXTURE_H_
#define SPIKESERVE_FUZZ_FUZZ_FIXTURE_H_

#include <memory>
#include <string>

#include "runtime/gguf/gguf_reader.h"
#include "runtime/model/model_config.h"
#include "runtime/quant/quant_plan.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/tokenizer_spec.h"
#include "tests/fixtures/gguf_builder.h"

namespace spikeserve::fuzz {

struct TinyModel {
  std::string bytes;
  std::unique_ptr<GgufFile> file;
  ModelConfig config;
  std::unique_ptr<Tokenizer> tokenizer;
  v1::ModelFingerprint fingerprint;
};

inline const TinyModel& GetTinyModel() {
  static const TinyModel* m = [] {
    auto* t = new TinyModel;
    t->bytes = testing::TinyLlama({.layers = 2, .context = 256}).Build();
    t->file = *GgufFile::FromBuffer(
        reinterpret_cast<const uint8_t*>(t->bytes.data()), t->bytes.size());
    t->config = *ReadModelConfig(*t->file);
    t->tokenizer = *Tokenizer::Create(*LoadTokenizerSpec(*t->file));
    t->fingerprint = FingerprintModel(*t->file, t->config);
    return t;
  }();
  return *m;
}

}  // namespace spikeserve::fuzz

#endif  // SPIKESERVE_FUZZ_FUZZ_FIXTURE_H_
