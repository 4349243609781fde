#include "runtime/linear/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <new>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

// AddressSanitizer checks the bounds of malloc's blocks, not of a slab's:
// its builds keep small blocks in malloc.
#if defined(__SANITIZE_ADDRESS__)
#define SPIKESERVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPIKESERVE_ASAN 1
#endif
#endif

namespace spikeserve {
namespace {

#ifdef SPIKESERVE_ASAN
constexpr bool kSmallBlocksFromMalloc = true;
#else
constexpr bool kSmallBlocksFromMalloc = false;
#endif

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kPage = 4096;
// Small blocks are carved from slabs of this much address space (touched
// memory only is backed: at most one partly used 2 MiB page per slab).
constexpr size_t kSlabBytes = size_t(32) << 20;
// A small block's header, and its alignment (a cache line).
constexpr size_t kLine = 64;

uintptr_t RoundUp(uintptr_t v, size_t to) { return (v + to - 1) / to * to; }

// `len` bytes (a multiple of 4 KiB) starting on a 2 MiB boundary, marked
// for huge pages before the first touch so that the faults take them.
void* MapAligned(size_t len) {
  // Map one huge page more than needed, keep the 2 MiB-aligned part.
  void* raw = ::mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t begin = uintptr_t(raw);
  const uintptr_t aligned = RoundUp(begin, kHugePage);
  const uintptr_t end = aligned + len, raw_end = begin + len + kHugePage;
  if (aligned > begin) ::munmap(raw, aligned - begin);
  if (raw_end > end) ::munmap(reinterpret_cast<void*>(end), raw_end - end);
  ::madvise(reinterpret_cast<void*>(aligned), len, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(aligned);
}

// Bump allocation in the current slab; a slab is unmapped when its last
// block is freed (the current one is emptied instead), and the last block
// of a slab gives its room back when freed first (a load's temporaries).
struct Slab {
  uintptr_t begin;
  size_t used = 0;  // bytes from begin handed out (headers included)
  size_t high = 0;  // the most `used` has been: what may be backed
  size_t live = 0;  // blocks not yet freed
};
struct Header {  // the kLine bytes before a small block
  Slab* slab;
  size_t start;  // offset of this header in the slab
};

class SlabArena {
 public:
  void* Allocate(size_t bytes) {
    const size_t need = kLine + RoundUp(bytes, kLine);
    absl::MutexLock lock(&mu_);
    if (current_ == nullptr || current_->used + need > kSlabBytes) {
      if (current_ != nullptr && current_->live == 0) Unmap(current_);
      current_ = new Slab{uintptr_t(MapAligned(kSlabBytes))};
    }
    Slab* s = current_;
    auto* h = reinterpret_cast<Header*>(s->begin + s->used);
    h->slab = s;
    h->start = s->used;
    s->used += need;
    if (s->used > s->high) s->high = s->used;
    ++s->live;
    return reinterpret_cast<uint8_t*>(h) + kLine;
  }

  void Free(void* p, size_t bytes) {
    auto* h = reinterpret_cast<Header*>(static_cast<uint8_t*>(p) - kLine);
    absl::MutexLock lock(&mu_);
    Slab* s = h->slab;
    if (h->start + kLine + RoundUp(bytes, kLine) == s->used) s->used = h->start;
    if (--s->live > 0) return;
    if (s != current_) {
      Unmap(s);
      return;
    }
    // Keep the address space for the next blocks, return the memory.
    ::madvise(reinterpret_cast<void*>(s->begin), RoundUp(s->high, kHugePage),
              MADV_DONTNEED);
    s->used = s->high = 0;
  }

 private:
  static void Unmap(Slab* s) {
    ::munmap(reinterpret_cast<void*>(s->begin), kSlabBytes);
    delete s;
  }
  absl::Mutex mu_;
  Slab* current_ ABSL_GUARDED_BY(mu_) = nullptr;
};

SlabArena& Arena() {
  static SlabArena* arena = new SlabArena();  // never destroyed
  return *arena;
}

}  // namespace

void* AllocateHugePageBacked(size_t bytes) {
  if (bytes >= kHugePage) return MapAligned(RoundUp(bytes, kPage));
  if (!kSmallBlocksFromMalloc) return Arena().Allocate(bytes);
  void* p = std::malloc(bytes == 0 ? 1 : bytes);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

bool SmallBlocksShareHugePages() { return !kSmallBlocksFromMalloc; }

void FreeHugePageBacked(void* p, size_t bytes) {
  if (p == nullptr) return;
  if (bytes >= kHugePage) {
    ::munmap(p, RoundUp(bytes, kPage));
  } else if (!kSmallBlocksFromMalloc) {
    Arena().Free(p, bytes);
  } else {
    std::free(p);
  }
}

}  // namespace spikeserve
