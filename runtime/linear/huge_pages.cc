#include "runtime/linear/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <new>

namespace spikeserve {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kPage = 4096;

uintptr_t RoundUp(uintptr_t v, size_t to) { return (v + to - 1) / to * to; }

}  // namespace

void* AllocateHugePageBacked(size_t bytes) {
  if (bytes < kHugePage) {
    void* p = std::malloc(bytes == 0 ? 1 : bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  const size_t len = RoundUp(bytes, kPage);
  // Map one huge page more than needed, keep the 2 MiB-aligned part.
  void* raw = ::mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t begin = uintptr_t(raw);
  const uintptr_t aligned = RoundUp(begin, kHugePage);
  const uintptr_t end = aligned + len, raw_end = begin + len + kHugePage;
  if (aligned > begin) ::munmap(raw, aligned - begin);
  if (raw_end > end) ::munmap(reinterpret_cast<void*>(end), raw_end - end);
  // Before the first touch, so that the faults themselves take huge pages.
  ::madvise(reinterpret_cast<void*>(aligned), len, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(aligned);
}

void FreeHugePageBacked(void* p, size_t bytes) {
  if (p == nullptr) return;
  if (bytes < kHugePage) {
    std::free(p);
  } else {
    ::munmap(p, RoundUp(bytes, kPage));
  }
}

}  // namespace spikeserve
