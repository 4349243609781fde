// Small UTF-8 helpers for the tokenizer and the streaming detokenizer.
#ifndef SPIKESERVE_RUNTIME_TEXT_UTF8_H_
#define SPIKESERVE_RUNTIME_TEXT_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace spikeserve {

// Length of the UTF-8 sequence a lead byte announces (1 for ASCII and for
// invalid lead bytes, which are then handled byte by byte).
int Utf8SequenceLength(uint8_t lead);

// Decodes the code point at s[i] (i < s.size()) and sets *len to its byte
// length; an invalid lead byte or a sequence cut by the end of `s` is
// U+FFFD of length 1. Continuation bytes are not checked.
uint32_t CodePointAt(absl::string_view s, size_t i, int* len);

// Appends code point `cp` encoded as UTF-8.
void AppendUtf8(uint32_t cp, std::string* out);

// Length of the longest prefix of `s` that is complete, valid UTF-8 except
// for a trailing incomplete (but so far valid) sequence, which is excluded.
// `*invalid_at` is set to the offset of the first invalid byte, or npos.
size_t CompleteUtf8Prefix(absl::string_view s, size_t* invalid_at);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_TEXT_UTF8_H_
