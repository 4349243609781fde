// y[m][N] = x[m][K] · Wᵀ in FP32 for the unquantized linears (QFeM sites,
// an FP32 or BF16 lm_head, the FP32 model), computed so that each output
// is the same sequence of float operations whatever the row count m, the
// other rows of the call, the thread count or the ISA:
//
//   lane j in 0..7:  a_j = fma chain over k = j, j + 8, j + 16, ... < K8
//                    of x[k] · w[k]  (acc = +0; acc = fma(x, w, acc)),
//                    x and w zero past K (K8 = K rounded up to 8)
//   y = ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))
//
// Why not oneDNN's sgemm or bf16 matmul: they pick their blocking, and so
// their summation order, by m. sgemm's result for a row differs in the last
// bits between a call of 1 row and one of 2-16 rows for 66-94% of the
// outputs on SmolLM2's and Llama's shapes; the INT8 rounding of the next
// layers turns that into other greedy tokens (method.md, batch
// invariance): a plan with QFeM modules gave other tokens on a
// prefix-cache hit, with other prefill chunks or beside other requests
// (tests/batch_invariance_test.cc).
//
// W is [N][K] row-major, as float or as bf16 bits (converted to float
// exactly in registers). The AVX2 kernel equals the scalar one bit for bit
// (tests/fixed_order_gemm_test.cc); AVX-512 machines run the AVX2 kernel.
#ifndef SPIKESERVE_RUNTIME_LINEAR_FIXED_ORDER_GEMM_H_
#define SPIKESERVE_RUNTIME_LINEAR_FIXED_ORDER_GEMM_H_

#include <cstdint>

namespace spikeserve {

enum class FixedOrderIsa { kScalar, kAvx2 };

// The kernel this CPU runs (AVX2 with FMA, else scalar).
FixedOrderIsa BestFixedOrderIsa();
// True when this CPU runs `isa`.
bool FixedOrderIsaSupported(FixedOrderIsa isa);
// "scalar" or "avx2" (logs and test names).
const char* FixedOrderIsaName(FixedOrderIsa isa);

// y[r][n] for r < m, n < N as above; W float [N][K]. Splits columns over
// the OpenMP team when the call is large enough to pay for it (outputs do
// not depend on the split).
void FixedOrderGemm(const float* x, int m, const float* w, int n, int k,
                    float* y, FixedOrderIsa isa = BestFixedOrderIsa());
// The same with W as bf16 bits [N][K].
void FixedOrderGemm(const float* x, int m, const uint16_t* w, int n, int k,
                    float* y, FixedOrderIsa isa = BestFixedOrderIsa());
// The float form into rows of a wider output: y[r * ldy + c] for c < n
// (n columns of a matrix whose weights come in pieces).
void FixedOrderGemmStrided(const float* x, int m, const float* w, int n, int k,
                           float* y, int ldy);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_FIXED_ORDER_GEMM_H_
