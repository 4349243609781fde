#include "runtime/text/utf8.h"

namespace spikeserve {

int Utf8SequenceLength(uint8_t b) {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

uint32_t CodePointAt(absl::string_view s, size_t i, int* len) {
  const uint8_t b = uint8_t(s[i]);
  int n = Utf8SequenceLength(b);
  if (i + n > s.size()) n = 1;
  *len = n;
  if (n == 1) return b < 0x80 ? b : 0xFFFD;
  uint32_t cp = b & (0xFF >> (n + 1));
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (uint8_t(s[i + k]) & 0x3F);
  return cp;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(char(cp));
  } else if (cp < 0x800) {
    out->push_back(char(0xC0 | (cp >> 6)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(char(0xE0 | (cp >> 12)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(char(0xF0 | (cp >> 18)));
    out->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  }
}

size_t CompleteUtf8Prefix(absl::string_view s, size_t* invalid_at) {
  *invalid_at = std::string::npos;
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t b = uint8_t(s[i]);
    int len;
    uint32_t min;
    if (b < 0x80) {
      ++i;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      len = 2, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4, min = 0x10000;
    } else {
      *invalid_at = i;
      return i;
    }
    uint32_t cp = b & (0xFF >> (len + 1));
    for (int k = 1; k < len; ++k) {
      if (i + k >= s.size()) return i;  // incomplete, so far valid
      const uint8_t c = uint8_t(s[i + k]);
      if ((c & 0xC0) != 0x80) {
        *invalid_at = i;
        return i;
      }
      cp = (cp << 6) | (c & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      *invalid_at = i;
      return i;
    }
    i += len;
  }
  return i;
}

}  // namespace spikeserve
