// Memory for large buffers that are streamed on every decode step (packed
// weights): 2 MiB-aligned and marked for transparent huge pages.
//
// Why: decode reads every weight once per token, and with 4 KiB pages the
// stream crosses a page (a TLB fill, and the end of the hardware
// prefetcher's run) every 4 KiB. With THP in "madvise" mode (this
// machine's, and Debian's kernel default) only regions that ask get huge
// pages, and only where a whole aligned 2 MiB extent lies in the mapping.
// Measured on the AVX2 EPYC (Zen 2, 2 threads, 3 alternating rounds): the W4
// kernel at one row on cold 2048x5632 weights streams 16.1 -> 19.1 GB/s
// (linear_bench BM_W4Avx2KernelCold), TinyLlama-shape W4A8 decode 34.7 -> 37.3
// tok/s.
//
// Blocks below 2 MiB (every matrix of a small model: SmolLM2-135M's
// largest packed W4 matrix is 0.9 MiB) are carved one after another,
// 64-byte aligned, from shared 32 MiB slabs marked the same way, so that
// they too sit in huge pages, back to back. Measured on the AVX-512 VNNI
// Xeon (Ice Lake, 2 threads, spikeserve-speed on SmolLM2-135M, alternating
// rounds), malloc's 4 KiB pages -> slabs: --w4a8 tg 176-194 -> 211-223
// tok/s, pp 961-1052 -> 1056-1201; the default W8A8 plan tg 130-138 ->
// 144-148, pp 1183-1274 -> 1341-1409; peak RSS alike (286 MB; 431 -> 433).
// A slab's address space is returned when its last block is freed. Until
// then it backs its live blocks, one partly used 2 MiB page, and the room
// of blocks freed before a later neighbour (weights live as long as their
// model, so this is the room of a load's temporaries at most; a slab's
// last block gives its room back at once).
//
// Where THP is off the memory is ordinary 4 KiB pages (madvise is a hint;
// its failure is ignored). A large block's tail past its last whole 2 MiB
// stays in 4 KiB pages.
#ifndef SPIKESERVE_RUNTIME_LINEAR_HUGE_PAGES_H_
#define SPIKESERVE_RUNTIME_LINEAR_HUGE_PAGES_H_

#include <cstddef>
#include <vector>

namespace spikeserve {

// Throws std::bad_alloc when out of memory (as operator new does).
void* AllocateHugePageBacked(size_t bytes);
// `bytes` as passed to AllocateHugePageBacked.
void FreeHugePageBacked(void* p, size_t bytes);
// Whether blocks below 2 MiB come from the shared slabs (64-byte aligned);
// false in AddressSanitizer builds, where they come from malloc so that
// their bounds stay checked.
bool SmallBlocksShareHugePages();

template <typename T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}  // NOLINT: rebinding
  T* allocate(size_t n) {
    return static_cast<T*>(AllocateHugePageBacked(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) { FreeHugePageBacked(p, n * sizeof(T)); }
};
template <typename T, typename U>
bool operator==(const HugePageAllocator<T>&, const HugePageAllocator<U>&) {
  return true;
}
template <typename T, typename U>
bool operator!=(const HugePageAllocator<T>&, const HugePageAllocator<U>&) {
  return false;
}

template <typename T>
using HugePageVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_HUGE_PAGES_H_
