#include "runtime/serving/kv_sizing.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace spikeserve {
namespace {

absl::Status Bad(absl::string_view spec, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("KV cache size \"", spec, "\": ", why,
                   " (give bytes with an optional K/M/G/T suffix, e.g. 2G, "
                   "or a percentage of available memory, e.g. 30%)"));
}

// The first number of `path`, or -1.
int64_t ReadNumber(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s)) return -1;
  int64_t v;
  return absl::SimpleAtoi(s, &v) ? v : -1;
}

}  // namespace

int64_t KvBytesPerToken(int n_layers, int kv_dim, bool bf16) {
  return int64_t(n_layers) * 2 * kv_dim * (bf16 ? 2 : 4);
}

absl::StatusOr<int64_t> ParseKvCacheBytes(absl::string_view spec,
                                          int64_t available_bytes) {
  std::string s(absl::StripAsciiWhitespace(spec));
  if (s.empty()) return Bad(spec, "empty");
  long double bytes = 0;
  if (s.back() == '%') {
    double pct;
    if (!absl::SimpleAtod(s.substr(0, s.size() - 1), &pct) ||
        !(pct > 0 && pct <= 100)) {
      return Bad(spec, "a percentage must be in (0, 100]");
    }
    if (available_bytes <= 0) {
      return Bad(spec, "the available memory is unknown here");
    }
    bytes = (long double)available_bytes * pct / 100;
  } else {
    int shift = 0;
    switch (absl::ascii_toupper(s.back())) {
      case 'K':
        shift = 10;
        break;
      case 'M':
        shift = 20;
        break;
      case 'G':
        shift = 30;
        break;
      case 'T':
        shift = 40;
        break;
      default:
        break;
    }
    if (shift > 0) s.pop_back();
    double v;
    if (!absl::SimpleAtod(s, &v) || !(v > 0) || v > 1e18) {
      return Bad(spec, "not a positive size");
    }
    bytes = (long double)v * (long double)(int64_t(1) << shift);
  }
  return int64_t(std::min<long double>(
      bytes, (long double)std::numeric_limits<int64_t>::max()));
}

absl::StatusOr<int> KvBlocksForBytes(absl::string_view spec,
                                     int64_t per_token_bytes, int block_tokens,
                                     int64_t available_bytes) {
  absl::StatusOr<int64_t> bytes = ParseKvCacheBytes(spec, available_bytes);
  if (!bytes.ok()) return bytes.status();
  const long double per_block = (long double)per_token_bytes * block_tokens;
  const long double blocks = (long double)*bytes / per_block;
  if (blocks < 1) {
    return Bad(spec, absl::StrCat("smaller than one KV block (",
                                  int64_t(per_block), " bytes)"));
  }
  return int(std::min<long double>(blocks, std::numeric_limits<int>::max()));
}

int64_t AvailableMemoryBytes() {
  int64_t avail = -1;
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb;
  std::string unit;
  while (f >> key >> kb >> unit) {
    if (key == "MemAvailable:") {
      avail = kb * 1024;
      break;
    }
  }
  // cgroup v2: a container's limit (memory.max is "max" when unlimited).
  const int64_t limit = ReadNumber("/sys/fs/cgroup/memory.max");
  const int64_t used = ReadNumber("/sys/fs/cgroup/memory.current");
  if (limit > 0 && used >= 0) {
    const int64_t left = std::max<int64_t>(0, limit - used);
    avail = avail < 0 ? left : std::min(avail, left);
  }
  return avail;
}

}  // namespace spikeserve
