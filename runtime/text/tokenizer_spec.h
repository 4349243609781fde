// Extracts the tokenizer description from a GGUF file's tokenizer.ggml.*
// metadata.
#ifndef SPIKESERVE_RUNTIME_TEXT_TOKENIZER_SPEC_H_
#define SPIKESERVE_RUNTIME_TEXT_TOKENIZER_SPEC_H_

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_reader.h"
#include "runtime/text/tokenizer.h"

namespace spikeserve {

// Errors name the key: missing tokens/model, arrays of the wrong type or
// length, special ids outside the vocabulary.
absl::StatusOr<TokenizerSpec> LoadTokenizerSpec(const GgufFile& file);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_TEXT_TOKENIZER_SPEC_H_
