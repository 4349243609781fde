// A loaded LLaMA-family model and its batched forward pass.
//
// The Model is immutable after Load (weights, config, linear kernels); all
// per-sequence state lives in SequenceKv objects owned by the caller, in the
// spirit of gemma.cpp's Gemma/KVCache and llama.cpp's model/context split.
#ifndef SPIKESERVE_RUNTIME_MODEL_MODEL_H_
#define SPIKESERVE_RUNTIME_MODEL_MODEL_H_

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/gguf/gguf_reader.h"
#include "runtime/linear/hadamard.h"
#include "runtime/linear/linear.h"
#include "runtime/linear/quantize.h"
#include "runtime/linear/w4_gemm.h"
#include "runtime/model/forward_observer.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/model_config.h"
#include "runtime/model/site.h"
#include "runtime/model/weights.h"

namespace spikeserve {

struct AttentionScratch;
struct AttentionQuery;

// How the linear layers of q, k, v, o, gate, up and down run. Embeddings,
// lm_head, attention and the KV cache always stay FP32 (method.md §3).
enum class LmHeadPrecision { kFp32, kBf16, kInt8 };
// "fp32", "bf16", "int8"; Parse also takes "auto" (FastestLmHead()) and
// fails with a message listing the names.
const char* LmHeadPrecisionName(LmHeadPrecision p);
absl::StatusOr<LmHeadPrecision> ParseLmHeadPrecision(absl::string_view name);
// A W4A8 group by name: "auto" (0: the largest of 128/64/32 dividing each
// site's width), "stored" (kW4AsStored: the file's own 4-bit groups), or
// "32", "64", "128".
absl::StatusOr<int> ParseW4Group(absl::string_view name);
// The fastest lm_head that costs no measurable accuracy: INT8 (perplexity
// +0.004% vs FP32 head; decode +14% on AVX2, docs/performance.md; on Ice
// Lake half of BF16's bytes at one row and 135M W4A8 decode +20%,
// docs/w4a8.md). BF16 was the choice on CPUs with BF16 instructions while
// it ran on oneDNN's bf16 matmul, whose result for a row depended on the
// row count; it now runs the fixed-order kernel (bf16_linear.h), which
// reads twice INT8's bytes and uses no BF16 instruction.
LmHeadPrecision FastestLmHead();

// QuantOptions::w4_sites' group for "as the file stores it".
inline constexpr int kW4AsStored = -1;

class W4A8Linear;

// 4-bit weights quantized before the load (spikeserve-calibrate's GPTQ,
// carried in a plan's weights file: runtime/quant/w4_weights_file.h), for
// a site's rows as the plan transforms them (smoothing, rotations).
class GivenW4Weights {
 public:
  virtual ~GivenW4Weights() = default;
  virtual bool Has(const SiteKey& k) const = 0;
  // The site's codes and group scales; errors name the site and the problem.
  virtual absl::StatusOr<W4Plain> Get(const SiteKey& k) const = 0;
};

struct QuantOptions {
  bool w8a8 = false;  // false: everything FP32
  ActQuantMode mode = ActQuantMode::kPerTensorDynamic;
  // QFeM: sites whose modules keep unquantized activations, computed in
  // FP32 with FP32 weights, or BF16 weights (half the bytes) when
  // qfem_bf16 is set (bf16_linear.h).
  std::set<SiteKey> fp32_sites;
  bool qfem_bf16 = false;
  // kPerTensorStatic: calibrated input absmax of every INT8 site.
  std::map<SiteKey, float> static_absmax;
  // Spike guard (static mode): rows whose absmax exceeds guard_factor x the
  // calibrated absmax are computed in FP32 instead of being clipped. 0 = off.
  float guard_factor = 0;
  // W4A8 sites (quantized sites only: not in fp32_sites): 4-bit weights
  // in groups along K, -> the group size (32, 64, 128; 0 = the largest of
  // them that divides the site's K; kW4AsStored = the file's own 4-bit
  // groups where it stores the site so untransformed, else as 0). The
  // other quantized sites are W8A8.
  std::map<SiteKey, int> w4_sites;
  // Every quantized site W4A8 with group w4_everywhere_group, as by
  // --quant w4a8.
  bool w4_everywhere = false;
  int w4_everywhere_group = 0;
  // Re-quantized W4A8 weights in asymmetric groups (a half minimum per
  // group besides the scale, as GGUF's Q4_1): +0.5 bits per weight at
  // group 32, less error. Weights served as stored keep their own form.
  bool w4_with_min = false;
  // The same per site (the plan's weight_min), besides w4_with_min.
  std::set<SiteKey> w4_min_sites;
  // Per W4A8 site, the mean square of each input channel on calibration
  // activations as the site's matmul sees them (the plan's
  // weight_importance): its re-quantized groups choose their clipping to
  // minimise the importance-weighted weight error (w4_clip_search.h).
  // Sites without an entry round to nearest from each group's extremes.
  std::map<SiteKey, std::vector<float>> w4_importance;
  // W4A8 sites whose weights it Has are served as given (their group and
  // minimums are the given ones) instead of being re-quantized.
  std::shared_ptr<const GivenW4Weights> w4_given;
  // Row buckets to create and warm up at load (largest prefill chunk).
  int warmup_rows = 512;
  // Exact weight transforms applied at load, before quantization:
  // SmoothQuant scales per site (qkv, gate_up, down; see smoothing.h), then
  // a Hadamard rotation of down_proj's input (weights offline, activations
  // online before every down_proj): "smooth, then rotate".
  std::map<SiteKey, std::vector<float>> smooth_scales;
  bool down_hadamard = false;
  // Block Hadamard rotation of the RMSNorm outputs that q/k/v and gate/up
  // read (blocks of the largest power of two dividing hidden, <= 128; after
  // smoothing): the residual stream's massive channels set every token's
  // INT8 scale there, and a rotation spreads each over its block.
  bool norm_hadamard = false;
  // lm_head (vocab x hidden: the largest weight read of a decode step) in
  // FP32, BF16 (weights and activations, FP32 accumulation: half the bytes)
  // or INT8 W8A8 (per-channel weights, per-token activations: a quarter).
  LmHeadPrecision lm_head = LmHeadPrecision::kFp32;
  // An FP32 model (w8a8 false) that holds no FP32 copy: every matrix is read
  // from the file and dequantized on each forward (StreamedFp32Linear). The
  // tools' FP32 reference: a 3B model's would be 12.8 GB as FP32 copies.
  bool fp32_streamed = false;
  // KV cache in BF16 instead of FP32 (half the bytes per token; opt-in,
  // accuracy in docs/accuracy.md). The QFeP prefix's KV is then BF16 too.
  bool kv_bf16 = false;
};

// Per-call switches.
struct ForwardOptions {
  ForwardObserver* observer = nullptr;
  // Run every site in FP32 (the QFeP prefix; FP32 reference in eval).
  bool all_fp32 = false;
  // Extra FP32 sites for this call (QFeM search without rebuilding).
  const std::set<SiteKey>* fp32_sites = nullptr;
  // Decode batches (up to 16 rows) whose kernels all have a team form
  // (linear.h) run every layer in one OpenMP parallel region
  // (model_team.cc); false: one region per parallel step, as prefill
  // (the outputs are the same; tests compare the two).
  bool one_region = true;
};

// One sequence's share of a batch: the new tokens to run, appended after the
// positions already in `kv`.
struct BatchEntry {
  SequenceKv* kv = nullptr;
  absl::Span<const int32_t> tokens;
  // Logits for every new token (scoring, goldens), else for the last only.
  bool all_logits = false;
  // With all_logits false: whether the last token's logits are wanted (a
  // prefill chunk that does not finish its prompt needs none).
  bool last_logits = true;
};

class Model {
 public:
  // Converts every weight straight from the mapping into the one copy its
  // kernels read (no whole-model FP32 copy is made). The model keeps `file`
  // open for FP32 reference forwards (the QFeP prefix, evaluation) until
  // ReleaseUnquantizedWeights.
  static absl::StatusOr<std::unique_ptr<Model>> Load(
      std::shared_ptr<const GgufFile> file, const QuantOptions& quant = {});
  // From FP32 weights already in memory (tests, and tools that edit
  // weights); the model keeps them as its FP32 reference.
  static absl::StatusOr<std::unique_ptr<Model>> FromWeights(
      const ModelConfig& config, ModelWeights weights,
      const QuantOptions& quant = {});

  // The same weights under other quantization options, read again from
  // where this model reads them (the file, or the FP32 matrices it was
  // given): tools compare schemes without another FP32 copy of the model.
  // FailedPrecondition after ReleaseUnquantizedWeights.
  absl::StatusOr<std::unique_ptr<Model>> WithQuant(
      const QuantOptions& quant) const;

  const ModelConfig& config() const { return config_; }
  // A site's weight as stored (no transforms), as FP32 rows on demand.
  const WeightRows& site_source(int layer, Site site) const {
    return *sources_.sites[layer][int(site)];
  }
  // The same with this model's transforms applied (smoothing, rotations):
  // the rows its kernels quantize.
  const WeightRows& site_rows(int layer, Site site) const {
    return SiteRowsOf(layer, site);
  }
  // The norm gains (as served: smoothing folded in) and the FP32 matrices
  // that FP32 kernels read: every matrix of an FP32 model (and its
  // embedding), the QFeM sites computed in FP32, spike-guarded sites, an
  // FP32 lm_head. Other matrices are empty (shape kept): their kernels hold
  // their own copy, and FP32 references read the source.
  const ModelWeights& weights() const { return weights_; }
  // Drops the FP32 reference of the quantized sites: closes the model file
  // (Load) or frees the FP32 matrices given to FromWeights (all but the
  // embedding). Afterwards Forward with all_fp32 or extra fp32_sites (the
  // QFeP prefix, FP32 references) fails with FailedPrecondition when any
  // site is quantized: compute the prefix first. Returns the FP32 bytes
  // freed. Not thread-safe: call before the model is shared.
  int64_t ReleaseUnquantizedWeights();
  // The options in force.
  const QuantOptions& quant() const { return quant_; }
  // The implementation of the INT8 matmuls: oneDNN's (e.g.
  // "brg:avx512_core_vnni"), or "own:avx2" where our kernel
  // runs them all; "" when FP32 only.
  const std::string& int8_impl() const { return int8_impl_; }
  // Every weight byte the model holds, by format ("kept weights").
  struct WeightMemory {
    int64_t int8 = 0;       // INT8 kernels' copies (all of them)
    int64_t int4 = 0;       // W4A8 kernels' 4-bit weights and group scales
    int64_t bf16 = 0;       // BF16 kernels (QFeM option, lm_head)
    int64_t fp32 = 0;       // FP32 matrices, norms and biases
    int64_t embedding = 0;  // token_embd as stored in the file
    int64_t total() const { return int8 + int4 + bf16 + fp32 + embedding; }
  };
  WeightMemory weight_memory() const;
  // Up to how many rows the INT8 sites run on the packed-weight kernel
  // (int8_gemm_packed.h): Int8Linear::kEveryBatch (one INT8 copy, ours),
  // or 0 on a CPU without AVX2 (oneDNN's copy only).
  int packed_max_rows() const { return packed_max_rows_; }
  // Whether `k` runs with INT8 activations (false under QFeM or FP32).
  bool IsInt8(const SiteKey& k) const;
  // The group size of `k`'s 4-bit weights (W4A8), 0 when it has none; and
  // how many sites are W4A8.
  int W4Group(const SiteKey& k) const;
  int w4_site_count() const;
  // Whether `k`'s 4-bit groups carry a minimum (asymmetric).
  bool W4HasMin(const SiteKey& k) const;
  // Whether `k`'s 4-bit groups were chosen with the plan's importance
  // (QuantOptions::w4_importance) rather than from their extremes.
  bool W4ImportanceWeighted(const SiteKey& k) const;
  // Whether `k`'s 4-bit weights were given (QuantOptions::w4_given).
  bool W4Given(const SiteKey& k) const;

  // A KV pool shaped for this model (BF16 when quant().kv_bf16).
  absl::StatusOr<std::unique_ptr<KvPool>> NewKvPool(
      int num_blocks, int block_tokens = 16) const;

  // Whether a Forward of `rows` rows with `opt` runs its layers in one
  // parallel region (ForwardOptions::one_region).
  bool RunsInOneRegion(int rows, const ForwardOptions& opt) const {
    return TeamEligible(rows, opt);
  }

  // Runs every entry's new tokens through the model (all rows of the batch
  // share each linear layer call), writes their K/V into the entries'
  // caches and advances their lengths. `logits` receives, entry after entry,
  // one [vocab] row per requested position. Errors (bad token id, no KV
  // room, context overflow) leave every cache's length unchanged.
  // One caller at a time (kernels keep scratch buffers).
  absl::Status Forward(absl::Span<const BatchEntry> batch,
                       std::vector<float>* logits,
                       const ForwardOptions& options = {}) const;

 private:
  Model() = default;
  // Transforms, kernels, warm-up; sources_ and weights_' norms are set.
  absl::Status Finish();
  absl::Status BuildKernels();
  absl::Status BuildLmHead();
  // Warms oneDNN's INT8 primitives of a K x N site for every row bucket
  // (none where our kernel runs every batch) and names the implementation
  // (see int8_impl()).
  absl::StatusOr<std::string> WarmUpInt8(int k, int n) const;
  // Site `s` of layer `l` as served (transforms applied), as rows.
  const WeightRows& SiteRowsOf(int l, Site s) const;
  // `k`'s W4A8 kernel, nullptr when the site is not W4A8.
  const W4A8Linear* W4Kernel(const SiteKey& k) const;
  // Runs `site` of `layer` on rows x [m][in] into y [m][out].
  void RunSite(int layer, Site site, const float* x, int m,
               absl::Span<const int> bounds, const ForwardOptions& opt,
               std::vector<float>* absmax_scratch, float* y) const;

  // The decode form of Forward's layer loop (m rows, few): every layer in
  // one OpenMP parallel region (see model.cc). Eligible when every site's
  // INT8 kernel has a team form for m rows and no site runs in FP32.
  bool TeamEligible(int m, const ForwardOptions& opt) const;
  // The buffers of one Forward call (model.cc's per-thread Workspace).
  struct StepBuffers {
    float *x, *xn, *qkv, *q, *att, *gu, *h, *tmp;  // [m][width] each
    const float* rope;                             // [m][rope_dims] cos|sin
    std::vector<float>* absmax;                    // [m], site inputs
    AttentionScratch* attention;
    std::vector<AttentionQuery>* queries;  // one layer's attention rows
    std::vector<float>* sel;               // the lm_head's input rows
  };
  // Row `row` ([qkv width]) of layer l's qkv output, at position pos of
  // kv: the bias, RoPE on its query and key, the key and value into the
  // cache, and the query into q [q_dim] (attention wants queries
  // contiguous; in the row they are strided).
  void PositionRow(const LayerWeights& L, int l, SequenceKv* kv, int pos,
                   const float* cos_sin, float* row, float* q) const;
  // The residual stream's norm (and the norm-output rotation) of m rows of
  // x into xn; over the OpenMP team from kParallelRows (32) rows, more than
  // a one-region decode batch (model_team.cc), whose thread 0 calls it.
  void NormRows(const std::vector<float>& gain, int m, const float* x,
                float* xn) const;
  // Every entry's rows of b.q in one attention pass (prefill chunks and
  // decode rows alike, so that a row's result does not depend on its
  // company), their outputs into b.att.
  void AttentionQueries(absl::Span<const BatchEntry> batch,
                        const StepBuffers& b,
                        std::vector<AttentionQuery>* queries) const;
  // The layers, each step over the team where its rows are many enough.
  void Layers(absl::Span<const BatchEntry> batch, absl::Span<const int> bounds,
              const int* row_pos, const ForwardOptions& opt,
              const StepBuffers& b) const;
  // With logits: the lm_head too (Forward's, for the rows that want them).
  void LayersInTeam(absl::Span<const BatchEntry> batch,
                    absl::Span<const int> bounds, const int* row_pos,
                    const ForwardOptions& opt, const StepBuffers& b,
                    std::vector<float>* logits) const;
  // The lm_head's input: the final norm (and rotation) of the rows that
  // want logits, into sel [n_out][hidden]; returns n_out.
  int HeadInput(absl::Span<const BatchEntry> batch, const float* x,
                std::vector<float>* sel) const;

  struct SiteKernels {
    std::unique_ptr<Linear> fp32;
    std::unique_ptr<Linear> int8;  // null when the site is FP32 by plan
    std::unique_ptr<Linear> bf16;  // QFeM site computed in BF16
    float guard_absmax = 0;        // > 0: spike guard threshold
  };

  ModelConfig config_;
  ModelWeights weights_;
  // Where the weights come from: the file (Load) or given_ (FromWeights).
  std::shared_ptr<const GgufFile> file_;
  ModelWeights given_;
  WeightSources sources_;
  // [layer][site]: sources_ with the site's transforms; null = none.
  std::vector<std::array<std::unique_ptr<WeightRows>, kNumSites>> site_rows_;
  bool streamed_fp32_ = false;  // some site's FP32 kernel reads the source
  bool fp32_released_ = false;
  QuantOptions quant_;
  std::string int8_impl_;
  int packed_max_rows_ = 0;
  std::vector<std::array<SiteKernels, kNumSites>> kernels_;  // [layer][site]
  std::unique_ptr<Linear> lm_head_;
  std::optional<HadamardTransform> down_rotation_;
  // QuantOptions::norm_hadamard: over blocks of hidden (HiddenRotationBlock).
  std::optional<HadamardTransform> norm_rotation_;
  // INT8 lm_head: block-diagonal Hadamard over blocks of hidden
  // (HiddenRotationBlock), applied to the final-norm output online and to
  // the weight copy offline.
  std::optional<HadamardTransform> lm_head_rotation_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_MODEL_H_
