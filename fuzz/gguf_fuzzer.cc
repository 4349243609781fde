// Arbitrary bytes as a GGUF file: the reader, the model config and the
// tokenizer built from its metadata must fail cleanly or succeed, never
// crash, overflow or read out of bounds.
#include <cstddef>
#include <cstdint>

#include "runtime/gguf/gguf_reader.h"
#include "runtime/model/model_config.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/tokenizer_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spikeserve;
  auto file = GgufFile::FromBuffer(data, size);
  if (!file.ok()) return 0;
  (void)ReadModelConfig(**file);
  auto spec = LoadTokenizerSpec(**file);
  if (!spec.ok()) return 0;
  auto tok = Tokenizer::Create(*std::move(spec));
  if (!tok.ok()) return 0;
  (void)(*tok)->Encode("Hello, world! 123", true, true);
  return 0;
}
