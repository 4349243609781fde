// Row-wise elementwise operations of the LLaMA block, FP32.
#ifndef SPIKESERVE_RUNTIME_MODEL_OPS_H_
#define SPIKESERVE_RUNTIME_MODEL_OPS_H_

namespace spikeserve {

// y[i] = x[i] / sqrt(mean(x²) + eps) * gain[i], for one row of width n.
// The mean is accumulated in double, as ggml does, so long rows round alike.
void RmsNorm(const float* x, const float* gain, int n, float eps, float* y);

// Rotates the first `rope_dims` entries of each of `n_heads` heads of width
// `head_dim` in place by position `pos`, pairing adjacent entries (2i, 2i+1):
// GGUF's "normal" RoPE layout, which llama.cpp's converters produce for
// architecture llama. theta_i = pos * base^(-2i / rope_dims).
void Rope(float* x, int n_heads, int head_dim, int rope_dims, int pos,
          float base);

// The same in two steps, so the angles of a position are computed once per
// forward instead of once per layer, head kind and row:
// cos_sin[2i], cos_sin[2i+1] = cos, sin of theta_i for i < rope_dims / 2.
void RopeAngles(int pos, int rope_dims, float base, float* cos_sin);
// With scaling: theta_i = freq_scale * (pos * base^(-2i / rope_dims)) /
// factors[i] (factors may be null), in llama.cpp's order of operations.
void RopeAngles(int pos, int rope_dims, float base, float freq_scale,
                const float* factors, float* cos_sin);
// neox: pairs (i, i + rope_dims / 2) instead of (2i, 2i+1).
void ApplyRope(float* x, int n_heads, int head_dim, int rope_dims,
               const float* cos_sin, bool neox = false);

// h[i] = silu(gate[i]) * up[i] over n entries; silu(g) = g / (1 + e^-g).
void SiluMul(const float* gate, const float* up, int n, float* h);

// x += delta over [m][h] (a block's output onto the residual stream), in
// row ranges over the team for prefill-sized m (with the query copy and
// W4GroupSums, the serial steps between a prefill's parallel ones: +2% pp,
// 135M W4A8 on Ice Lake, 20 prefills each way alternating in one process).
void AddResidual(const float* delta, int m, int h, float* x);

// e^x with ~2e-7 relative error (the inline, vectorizable exp the ops use).
float Exp(float x);

// In-place softmax over n entries (max-subtracted).
void Softmax(float* x, int n);
// sum_i e^(x[i] - shift), vectorized, accumulated in double per 16 lanes.
double SumExpShifted(const float* x, int n, float shift);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_OPS_H_
