#include "runtime/text/special_split.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"

namespace spikeserve {
namespace {

// Occurrences recorded per byte of text before the literal form takes over
// (each position may start several nested specials).
constexpr size_t kMaxOccurrencesPerByte = 4;

// The end of a special at `at` with its rstrip whitespace, within `end`.
size_t AfterSpecial(absl::string_view text, size_t at, size_t end,
                    bool rstrip) {
  if (rstrip) {
    // ASCII whitespace only, as llama.cpp's isspace().
    while (at < end &&
           absl::ascii_isspace(static_cast<unsigned char>(text[at]))) {
      ++at;
    }
  }
  return at;
}

}  // namespace

SpecialSplitter::SpecialSplitter(std::vector<SpecialToken> specials)
    : specials_(std::move(specials)), trie_(1) {
  for (int rank = 0; rank < int(specials_.size()); ++rank) {
    int node = 0;
    for (char c : specials_[rank].text) {
      const uint8_t b = uint8_t(c);
      int child = Child(node, b);
      if (child < 0) {
        child = int(trie_.size());
        trie_.emplace_back();
        auto& next = trie_[node].next;
        next.insert(std::lower_bound(next.begin(), next.end(),
                                     std::pair<uint8_t, int>(b, -1)),
                    {b, child});
      }
      node = child;
    }
    trie_[node].ends.push_back(rank);
  }
  for (int b = 0; b < 256; ++b) root_[b] = Child(0, uint8_t(b));
}

int SpecialSplitter::Child(int node, uint8_t b) const {
  const auto& next = trie_[node].next;
  auto it = std::lower_bound(next.begin(), next.end(),
                             std::pair<uint8_t, int>(b, -1));
  return it != next.end() && it->first == b ? it->second : -1;
}

std::vector<SpecialPiece> SpecialSplitter::Split(absl::string_view text,
                                                 bool parse_control) const {
  // Every occurrence of every special, by rank, in increasing position.
  std::vector<std::vector<size_t>> at(specials_.size());
  const size_t cap = kMaxOccurrencesPerByte * text.size() + 64;
  size_t found = 0;
  for (size_t p = 0; p < text.size(); ++p) {
    int node = root_[uint8_t(text[p])];  // most positions end here
    for (size_t q = p + 1; node >= 0; ++q) {
      for (int rank : trie_[node].ends) {
        if (specials_[rank].control && !parse_control) continue;
        at[rank].push_back(p);
        if (++found > cap) return SplitSequential(text, parse_control);
      }
      node = q < text.size() ? Child(node, uint8_t(text[q])) : -1;
    }
  }
  if (found == 0) {
    if (text.empty()) return {};
    return {{-1, text}};
  }
  // Replays the order: each special takes its occurrences, left to right,
  // that lie whole in raw text the earlier ones left (a taken one removes
  // its span, so overlapping later ones find none).
  std::map<size_t, size_t> raw;     // start -> end of each raw span
  std::map<size_t, int32_t> taken;  // position -> special id
  if (!text.empty()) raw[0] = text.size();
  for (size_t rank = 0; rank < specials_.size(); ++rank) {
    const SpecialToken& s = specials_[rank];
    for (size_t p : at[rank]) {
      auto it = raw.upper_bound(p);
      if (it == raw.begin()) continue;
      --it;
      const size_t start = it->first, end = it->second;
      if (p + s.text.size() > end) continue;
      const size_t after = AfterSpecial(text, p + s.text.size(), end, s.rstrip);
      raw.erase(it);
      if (p > start) raw[start] = p;
      if (after < end) raw[after] = end;
      taken[p] = s.id;
    }
  }
  std::vector<SpecialPiece> out;
  out.reserve(raw.size() + taken.size());
  auto r = raw.begin();
  auto t = taken.begin();
  while (r != raw.end() || t != taken.end()) {
    if (t == taken.end() || (r != raw.end() && r->first < t->first)) {
      out.push_back({-1, text.substr(r->first, r->second - r->first)});
      ++r;
    } else {
      out.push_back({t->second, {}});
      ++t;
    }
  }
  return out;
}

std::vector<SpecialPiece> SpecialSplitter::SplitSequential(
    absl::string_view text, bool parse_control) const {
  std::vector<SpecialPiece> pieces;
  if (!text.empty()) pieces.push_back({-1, text});
  for (const SpecialToken& s : specials_) {
    if (s.control && !parse_control) continue;
    std::vector<SpecialPiece> next;
    for (const SpecialPiece& f : pieces) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t at = 0;
      while (at < f.text.size()) {
        const size_t hit = f.text.find(s.text, at);
        if (hit == absl::string_view::npos) break;
        if (hit > at) next.push_back({-1, f.text.substr(at, hit - at)});
        next.push_back({s.id, {}});
        at = AfterSpecial(f.text, hit + s.text.size(), f.text.size(), s.rstrip);
      }
      if (at < f.text.size()) next.push_back({-1, f.text.substr(at)});
    }
    pieces = std::move(next);
  }
  return pieces;
}

}  // namespace spikeserve
