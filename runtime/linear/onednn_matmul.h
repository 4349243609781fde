// Cached oneDNN INT8 matmul primitives (the INT8 linears' batches that
// oneDNN serves, e.g. on AMX).
//
// Following toolchain.md: weights use the blocked layout oneDNN picks
// (format "any"), reordered once; M is fixed per primitive (one per row
// bucket) and scales are not runtime arguments, which keeps the fast brgemm
// kernels; primitives are created once per (kind, bucket, K, N) and shared by
// every layer of that shape.
#ifndef SPIKESERVE_RUNTIME_LINEAR_ONEDNN_MATMUL_H_
#define SPIKESERVE_RUNTIME_LINEAR_ONEDNN_MATMUL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/linear/huge_pages.h"

namespace spikeserve {

enum class MatmulKind {
  kS8S8S32,  // s8 activations x s8 weights -> s32 accumulators
  kU8S8S32,  // u8 activations (s8 + 128) x s8 weights -> s32
};
// The int8 kind the INT8 linears use on this CPU: s8 x s8 with VNNI;
// without it u8 x s8, the native form of the non-VNNI gemm (given s8
// activations it adds 128 and recomputes the weight compensation on every
// call; we add 128 ourselves and subtract precomputed row sums).
MatmulKind Int8Kind();

// What oneDNN can do on this CPU (its effective ISA: CPUID, capped by
// ONEDNN_MAX_CPU_ISA).
//
// The ISA name oneDNN dispatches to, e.g. "avx512_core_vnni" or "avx2".
std::string OneDnnCpuIsa();
// True when int8 matmuls multiply with VNNI (vpdpbusd: exact int32 sums).
// Without it oneDNN's int8 kernels use vpmaddubsw, whose int16 pair sums
// saturate for full-range s8 x s8 products.
bool Int8MatmulHasVnni();
// True when oneDNN's int8 matmuls run on AMX tiles (its effective ISA is
// avx512_core_amx: Sapphire Rapids and later, unless capped).
bool Int8MatmulHasAmx();
// Largest |q| of a quantized weight that every int8 kernel on this CPU
// accumulates exactly: 127 with VNNI; 63 without, so that a pair of
// u8 (s8 + 128 <= 255) x s7 products, 2 * 255 * 63 = 32130, fits int16.
int Int8WeightQmax();

// Rounds a row count up to the bucket whose primitive serves it: exact up
// to 16 (decode batches), then multiples of 16 (at most 15 padded rows).
int RowBucket(int m);

// The largest bucket: RunMatmul runs more rows in pieces of this many (a
// multiple of 16), so that every call uses a bucket WarmUpMatmul created
// and checked at load (the server's default warm-up), whatever the batch
// (--max_batch_tokens may exceed it).
inline constexpr int kMaxMatmulRows = 512;

// The implementation name oneDNN chooses for this kind and shape, e.g.
// "brg:avx512_core_vnni". FailedPrecondition for a reference ("ref...")
// kernel, which would be ~1000x slower.
absl::StatusOr<std::string> MatmulImpl(MatmulKind kind, int m, int k, int n);

// Creates (and runs once: a first execution costs ~20x the steady state)
// the primitive of every row bucket up to `max_rows` (at most
// kMaxMatmulRows), checking each is a
// non-reference kernel whose blocked weight layout equals the M = 1 one.
// Returns the implementation name.
absl::StatusOr<std::string> WarmUpMatmul(MatmulKind kind, int k, int n,
                                         int max_rows);

// Reorders plain weights W [N][K] (s8) into the blocked layout
// (in huge pages where large: decode streams it whole).
absl::StatusOr<HugePageVector<uint8_t>> ReorderWeights(MatmulKind kind,
                                                       const void* w_nk, int k,
                                                       int n);

// dst[mb][N] = src[mb][K] · W, mb = RowBucket(rows the caller filled),
// in pieces of kMaxMatmulRows rows. A bucket is checked against the M = 1
// weight layout once, when it is created; one that was not warmed up is
// created on first use and aborts with a message if it fails that check
// (only a warm-up below kMaxMatmulRows, as in tests, leaves any).
void RunMatmul(MatmulKind kind, int mb, int k, int n, const void* src,
               const HugePageVector<uint8_t>& blocked_weights, void* dst);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_ONEDNN_MATMUL_H_
