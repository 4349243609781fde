#include "runtime/text/jinja_strings.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/text/utf8.h"

namespace spikeserve::jinja {

uint32_t DecodeUtf8(absl::string_view s, size_t* pos) {
  const uint8_t b = uint8_t(s[*pos]);
  const int len = Utf8SequenceLength(b);
  if (len == 1 || *pos + len > s.size()) {
    ++*pos;
    return b;
  }
  uint32_t cp = b & (0xFF >> (len + 1));
  for (int k = 1; k < len; ++k) {
    const uint8_t c = uint8_t(s[*pos + k]);
    if ((c & 0xC0) != 0x80) {  // invalid: one byte is one "code point"
      ++*pos;
      return b;
    }
    cp = (cp << 6) | (c & 0x3F);
  }
  *pos += len;
  return cp;
}

std::vector<size_t> CodePointOffsets(absl::string_view s) {
  std::vector<size_t> offsets;
  offsets.reserve(s.size() + 1);
  size_t pos = 0;
  while (pos < s.size()) {
    offsets.push_back(pos);
    DecodeUtf8(s, &pos);
  }
  offsets.push_back(s.size());
  return offsets;
}

int64_t CodePointCount(absl::string_view s) {
  int64_t n = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    DecodeUtf8(s, &pos);
    ++n;
  }
  return n;
}

bool IsPythonSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) ||
         cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool IsLineBreak(uint32_t cp) {
  return cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C ||
         (cp >= 0x1C && cp <= 0x1E) || cp == 0x85 || cp == 0x2028 ||
         cp == 0x2029;
}

std::string PyStrip(absl::string_view s,
                    const std::optional<std::string>& chars, bool left,
                    bool right) {
  std::vector<uint32_t> strip_set;
  if (chars.has_value()) {
    size_t p = 0;
    while (p < chars->size()) strip_set.push_back(DecodeUtf8(*chars, &p));
  }
  auto strips = [&](uint32_t cp) {
    if (!chars.has_value()) return IsPythonSpace(cp);
    return std::find(strip_set.begin(), strip_set.end(), cp) != strip_set.end();
  };
  const std::vector<size_t> off = CodePointOffsets(s);
  const size_t n = off.size() - 1;
  size_t begin = 0, end = n;
  auto cp_at = [&](size_t i) {
    size_t p = off[i];
    return DecodeUtf8(s, &p);
  };
  if (left) {
    while (begin < end && strips(cp_at(begin))) ++begin;
  }
  if (right) {
    while (end > begin && strips(cp_at(end - 1))) --end;
  }
  return std::string(s.substr(off[begin], off[end] - off[begin]));
}

std::vector<std::string> PySplit(absl::string_view s,
                                 const std::optional<std::string>& sep,
                                 int64_t maxsplit) {
  std::vector<std::string> parts;
  if (sep.has_value()) {
    size_t start = 0;
    while (maxsplit < 0 || int64_t(parts.size()) < maxsplit) {
      const size_t at = s.find(*sep, start);
      if (at == absl::string_view::npos) break;
      parts.emplace_back(s.substr(start, at - start));
      start = at + sep->size();
    }
    parts.emplace_back(s.substr(start));
    return parts;
  }
  // Whitespace runs; no empty strings.
  size_t pos = 0;
  while (pos < s.size()) {
    size_t next = pos;
    while (pos < s.size()) {
      next = pos;
      if (!IsPythonSpace(DecodeUtf8(s, &next))) break;
      pos = next;
    }
    if (pos >= s.size()) break;
    if (maxsplit >= 0 && int64_t(parts.size()) == maxsplit) {
      // The rest, with trailing whitespace removed.
      parts.push_back(PyStrip(s.substr(pos), std::nullopt, false, true));
      return parts;
    }
    const size_t word = pos;
    while (pos < s.size()) {
      next = pos;
      if (IsPythonSpace(DecodeUtf8(s, &next))) break;
      pos = next;
    }
    parts.emplace_back(s.substr(word, pos - word));
  }
  return parts;
}

std::vector<std::string> PyRSplit(absl::string_view s,
                                  const std::optional<std::string>& sep,
                                  int64_t maxsplit) {
  // Without a limit both directions give the same parts. A limited split on
  // whitespace from the right is approximated by the left one (no real
  // template uses it).
  if (maxsplit < 0 || !sep.has_value()) return PySplit(s, sep, maxsplit);
  std::vector<std::string> parts;
  size_t end = s.size();
  while (int64_t(parts.size()) < maxsplit && end >= sep->size()) {
    const size_t at = s.rfind(*sep, end - sep->size());
    if (at == absl::string_view::npos) break;
    parts.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
    end = at;
  }
  parts.emplace_back(s.substr(0, end));
  std::reverse(parts.begin(), parts.end());
  return parts;
}

std::vector<std::string> PySplitLines(absl::string_view s) {
  std::vector<std::string> lines;
  size_t start = 0, pos = 0;
  while (pos < s.size()) {
    size_t next = pos;
    const uint32_t cp = DecodeUtf8(s, &next);
    if (IsLineBreak(cp)) {
      lines.emplace_back(s.substr(start, pos - start));
      if (cp == '\r' && next < s.size() && s[next] == '\n') ++next;
      start = next;
    }
    pos = next;
  }
  if (start < s.size()) lines.emplace_back(s.substr(start));
  return lines;
}

std::string PyReplace(absl::string_view s, absl::string_view from,
                      absl::string_view to, int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` between code points and at both ends.
    const std::vector<size_t> off = CodePointOffsets(s);
    int64_t done = 0;
    for (size_t i = 0; i + 1 < off.size(); ++i) {
      if (count < 0 || done < count) {
        absl::StrAppend(&out, to);
        ++done;
      }
      absl::StrAppend(&out, s.substr(off[i], off[i + 1] - off[i]));
    }
    if (count < 0 || done < count) absl::StrAppend(&out, to);
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(from, start);
    if (at == absl::string_view::npos) break;
    absl::StrAppend(&out, s.substr(start, at - start));
    absl::StrAppend(&out, to);
    start = at + from.size();
    ++done;
  }
  absl::StrAppend(&out, s.substr(start));
  return out;
}

namespace {

// Upper/lower pairs: ASCII, Latin-1, Greek, Cyrillic.
bool IsUpperCp(uint32_t cp) {
  return (cp >= 'A' && cp <= 'Z') || (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) ||
         (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) ||
         (cp >= 0x400 && cp <= 0x42F);
}
bool IsLowerCp(uint32_t cp) {
  return (cp >= 'a' && cp <= 'z') || (cp >= 0xDF && cp <= 0xFF && cp != 0xF7) ||
         (cp >= 0x3B1 && cp <= 0x3C9) || (cp >= 0x430 && cp <= 0x45F);
}

template <typename Map>
std::string MapCodePoints(absl::string_view s, Map map) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  size_t index = 0;
  while (pos < s.size()) {
    const size_t start = pos;
    const uint32_t cp = DecodeUtf8(s, &pos);
    const uint32_t mapped = map(cp, index++);
    if (mapped == cp) {
      absl::StrAppend(&out,
                      s.substr(start, pos - start));  // keeps invalid bytes
    } else {
      AppendUtf8(mapped, &out);
    }
  }
  return out;
}

}  // namespace

uint32_t ToUpper(uint32_t cp) {
  if (cp >= 'a' && cp <= 'z') return cp - 32;
  if (cp == 0xFF) return 0x178;
  if (cp >= 0xE0 && cp <= 0xFE && cp != 0xF7) return cp - 32;
  if (cp >= 0x3B1 && cp <= 0x3C9 && cp != 0x3C2) return cp - 32;
  if (cp == 0x3C2) return 0x3A3;
  if (cp >= 0x430 && cp <= 0x44F) return cp - 32;
  if (cp >= 0x450 && cp <= 0x45F) return cp - 80;
  return cp;
}

uint32_t ToLower(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + 32;
  if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 32;
  if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) return cp + 32;
  if (cp >= 0x410 && cp <= 0x42F) return cp + 32;
  if (cp >= 0x400 && cp <= 0x40F) return cp + 80;
  return cp;
}

bool IsCased(uint32_t cp) { return IsUpperCp(cp) || IsLowerCp(cp); }

std::string PyUpper(absl::string_view s) {
  // "ß".upper() is "SS" in Python; the one common expansion.
  return PyReplace(
      MapCodePoints(s, [](uint32_t cp, size_t) { return ToUpper(cp); }),
      "\xC3\x9F", "SS", -1);
}

std::string PyLower(absl::string_view s) {
  return MapCodePoints(s, [](uint32_t cp, size_t) { return ToLower(cp); });
}

std::string PyCapitalize(absl::string_view s) {
  return MapCodePoints(s, [](uint32_t cp, size_t i) {
    return i == 0 ? ToUpper(cp) : ToLower(cp);
  });
}

std::string PyTitle(absl::string_view s) {
  bool previous_cased = false;
  return MapCodePoints(s, [&](uint32_t cp, size_t) {
    if (!IsCased(cp)) {
      previous_cased = false;
      return cp;
    }
    const uint32_t mapped = previous_cased ? ToLower(cp) : ToUpper(cp);
    previous_cased = true;
    return mapped;
  });
}

std::vector<int64_t> SliceIndices(int64_t length, std::optional<int64_t> start,
                                  std::optional<int64_t> stop, int64_t step) {
  const int64_t lower = step > 0 ? 0 : -1;
  const int64_t upper = step > 0 ? length : length - 1;
  auto clamp = [&](std::optional<int64_t> v, int64_t if_unset) {
    if (!v.has_value()) return if_unset;
    int64_t x = *v;
    if (x < 0) {
      x += length;
      if (x < lower) x = lower;
    } else if (x > upper) {
      x = upper;
    }
    return x;
  };
  const int64_t from = clamp(start, step > 0 ? lower : upper);
  const int64_t to = clamp(stop, step > 0 ? upper : lower);
  std::vector<int64_t> indices;
  // i + step may pass int64's range (a step of 2^63 - 1): that ends the
  // slice, as it does in Python; wrapped, it aborted the process.
  for (int64_t i = from; step > 0 ? i < to : i > to;) {
    indices.push_back(i);
    if (__builtin_add_overflow(i, step, &i)) break;
  }
  return indices;
}

std::string PySliceString(absl::string_view s, std::optional<int64_t> start,
                          std::optional<int64_t> stop, int64_t step) {
  const std::vector<size_t> off = CodePointOffsets(s);
  const int64_t n = int64_t(off.size()) - 1;
  std::string out;
  if (step == 1) {  // contiguous: one copy
    const std::vector<int64_t> idx = SliceIndices(n, start, stop, step);
    if (idx.empty()) return out;
    return std::string(
        s.substr(off[idx.front()], off[idx.back() + 1] - off[idx.front()]));
  }
  for (int64_t i : SliceIndices(n, start, stop, step)) {
    absl::StrAppend(&out, s.substr(off[i], off[i + 1] - off[i]));
  }
  return out;
}

}  // namespace spikeserve::jinja
