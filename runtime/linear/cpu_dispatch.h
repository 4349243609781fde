// Run-time CPU dispatch of the runtime's own hot loops (no -march flag in
// shipped builds): the compiler emits AVX-512, AVX2 and baseline clones and
// an ifunc resolver picks one at load.
//
// ThreadSanitizer instruments the resolver, which runs before its runtime
// is initialized and crashes; TSan builds (SPIKESERVE_NO_TARGET_CLONES) get
// the baseline code only.
#ifndef SPIKESERVE_RUNTIME_LINEAR_CPU_DISPATCH_H_
#define SPIKESERVE_RUNTIME_LINEAR_CPU_DISPATCH_H_

#ifdef SPIKESERVE_NO_TARGET_CLONES
#define SPIKESERVE_CPU_CLONES
#else
#define SPIKESERVE_CPU_CLONES \
  __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

namespace spikeserve {

// Whether the CPU has AVX-512F, for the hand-written AVX-512 loops that
// stand beside the clones (checked once).
inline bool CpuHasAvx512F() {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return avx512;
}

// Whether the CPU has AVX2 (and FMA), for the hand-written AVX2 loops of
// the decode step's serial work beside the clones (checked once).
inline bool CpuHasAvx2() {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2;
}
inline bool CpuHasAvx2Fma() {
  static const bool fma = CpuHasAvx2() && __builtin_cpu_supports("fma");
  return fma;
}

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_CPU_DISPATCH_H_
