// vpdpbusd with its accumulator tied to one register, for the hand-written
// AVX-512 VNNI kernels (int8_gemm_vnni.cc, w4_gemm.cc).
//
// GCC 12 compiles _mm512_dpbusd_epi32 in a loop of many accumulators with a
// register copy before and after most of them, and spills: the instruction
// overwrites its accumulator, but the builtin is modelled as returning a
// new value. The asm's "+v" keeps each accumulator in place; the loops
// around it must also be fully unrolled (#pragma GCC unroll) for the
// accumulator arrays to live in registers at all.
#ifndef SPIKESERVE_RUNTIME_LINEAR_VNNI_DPBUSD_H_
#define SPIKESERVE_RUNTIME_LINEAR_VNNI_DPBUSD_H_

#include <immintrin.h>

namespace spikeserve {

// acc += the dot products of 4 unsigned bytes of u and 4 signed bytes of s
// in each int32 lane (operands in _mm512_dpbusd_epi32's order).
__attribute__((target("avx512f,avx512vnni"), always_inline)) inline void Dpbusd(
    __m512i& acc, __m512i u, __m512i s) {
  asm("vpdpbusd %[s], %[u], %[acc]"
      : [acc] "+v"(acc)
      : [u] "v"(u), [s] "vm"(s));
}

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_VNNI_DPBUSD_H_
