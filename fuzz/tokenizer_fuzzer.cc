// Arbitrary bytes through the byte-level BPE tokenizer: encoding never
// fails, and decoding gives the bytes back exactly (without special-token
// parsing); decoding arbitrary ids through the streaming detokenizer yields
// valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz/fuzz_fixture.h"
#include "runtime/text/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spikeserve;
  const Tokenizer& tok = *fuzz::GetTinyModel().tokenizer;
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto ids = tok.Encode(text, /*add_special=*/false, /*parse_special=*/false);
  if (!ids.ok()) std::abort();
  auto back = tok.Decode(*ids);
  if (!back.ok() || *back != text) std::abort();
  (void)tok.Encode(text, true, true);
  // The bytes as token ids (two bytes each).
  StreamingDetokenizer detok(&tok, /*render_special=*/size % 2 == 0);
  std::string out;
  for (size_t i = 0; i + 1 < size; i += 2) {
    const int32_t id =
        int32_t((data[i] | (data[i + 1] << 8)) % (tok.vocab_size() + 4)) -
        2;  // some invalid
    auto piece = detok.Push(id);
    if (piece.ok()) out += *piece;
  }
  out += detok.Flush();
  size_t invalid = std::string::npos;
  if (CompleteUtf8Prefix(out, &invalid) != out.size() ||
      invalid != std::string::npos) {
    std::abort();  // the detokenizer promises valid UTF-8
  }
  return 0;
}
