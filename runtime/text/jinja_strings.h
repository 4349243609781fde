// Python str operations on UTF-8 text for the Jinja interpreter: code point
// indexing and slicing, whitespace classes, strip/split/title and the like.
// Python works on code points, so every position here is a code point
// index; invalid UTF-8 bytes count as one code point each (the front end
// hands in valid UTF-8, this only keeps bad input from crashing).
#ifndef SPIKESERVE_RUNTIME_TEXT_JINJA_STRINGS_H_
#define SPIKESERVE_RUNTIME_TEXT_JINJA_STRINGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace spikeserve::jinja {

// Decodes one code point at s[*pos] and advances *pos (at least one byte).
uint32_t DecodeUtf8(absl::string_view s, size_t* pos);
// The code points of s, and their byte offsets (offsets has one more entry:
// s.size()).
std::vector<size_t> CodePointOffsets(absl::string_view s);
int64_t CodePointCount(absl::string_view s);

// Python str.isspace() of one code point.
bool IsPythonSpace(uint32_t cp);
// Line boundaries of str.splitlines().
bool IsLineBreak(uint32_t cp);

// str.strip/lstrip/rstrip: `chars` unset strips whitespace.
std::string PyStrip(absl::string_view s,
                    const std::optional<std::string>& chars, bool left,
                    bool right);
// str.split(sep, maxsplit): unset sep splits on whitespace runs.
std::vector<std::string> PySplit(absl::string_view s,
                                 const std::optional<std::string>& sep,
                                 int64_t maxsplit);
std::vector<std::string> PyRSplit(absl::string_view s,
                                  const std::optional<std::string>& sep,
                                  int64_t maxsplit);
// str.splitlines(keepends=False).
std::vector<std::string> PySplitLines(absl::string_view s);
// str.replace(old, new, count); count < 0 means all.
std::string PyReplace(absl::string_view s, absl::string_view from,
                      absl::string_view to, int64_t count);
// Case mapping (ASCII and Latin-1/Greek/Cyrillic basics; other scripts are
// left as they are).
uint32_t ToUpper(uint32_t cp);
uint32_t ToLower(uint32_t cp);
bool IsCased(uint32_t cp);
std::string PyUpper(absl::string_view s);
std::string PyLower(absl::string_view s);
std::string PyCapitalize(absl::string_view s);
std::string PyTitle(absl::string_view s);  // str.title()
// Code point slice s[start:stop:step] with Python's clamping; unset bounds
// are the defaults for the step's sign.
std::string PySliceString(absl::string_view s, std::optional<int64_t> start,
                          std::optional<int64_t> stop, int64_t step);
// Python slice.indices(): the selected positions of a sequence of `length`.
std::vector<int64_t> SliceIndices(int64_t length, std::optional<int64_t> start,
                                  std::optional<int64_t> stop, int64_t step);

}  // namespace spikeserve::jinja

#endif  // SPIKESERVE_RUNTIME_TEXT_JINJA_STRINGS_H_
