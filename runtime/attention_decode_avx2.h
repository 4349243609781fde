// Decode attention's two inner loops for one (row, head) pair, in AVX2 +
// FMA: scores over every visible position, then the weighted sum of V.
// They replace one Dot and one Axpy call per position (each a dispatched
// call with a 16-lane horizontal sum), which cost ~1 ms of a 135M decode
// step on Zen 3 (36 us per layer).
//
// Rows are read in place from the paged KV cache: row p of the head is
// rows[p] + offset, head_dim floats.
#ifndef SPIKESERVE_RUNTIME_ATTENTION_DECODE_AVX2_H_
#define SPIKESERVE_RUNTIME_ATTENTION_DECODE_AVX2_H_

namespace spikeserve {

// True when this CPU has AVX2 and FMA and head_dim is a multiple of 8.
bool DecodeAttentionAvx2Supported(int head_dim);

// s[p] = scale · q · k_p for p in [0, n).
void HeadScoresAvx2(const float* q, const float* const* k_rows, int offset,
                    int n, int head_dim, float scale, float* s);

// o = Σ_p s[p] · v_p over p in [0, n) (o is overwritten).
void HeadWeightedSumAvx2(const float* s, const float* const* v_rows, int offset,
                         int n, int head_dim, float* o);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_ATTENTION_DECODE_AVX2_H_
