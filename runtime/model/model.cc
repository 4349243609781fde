#include "runtime/model/model.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/linear/bf16_linear.h"
#include "runtime/linear/int8_linear.h"
#include "runtime/linear/parallel_rows.h"
#include "runtime/linear/w4a8_linear.h"
#include "runtime/model/attention.h"
#include "runtime/model/ops.h"
#include "runtime/model/smoothing.h"

namespace spikeserve {

namespace {

const Matrix& SiteMatrix(const LayerWeights& L, Site s) {
  switch (s) {
    case Site::kQkv:
      return L.wqkv;
    case Site::kO:
      return L.wo;
    case Site::kGateUp:
      return L.w_gate_up;
    case Site::kDown:
      return L.w_down;
  }
  return L.wqkv;
}
Matrix& SiteMatrix(LayerWeights& L, Site s) {
  return const_cast<Matrix&>(SiteMatrix(std::as_const(L), s));
}

// Forward's buffers, per thread, grow-only.
struct Workspace {
  std::vector<float> x, xn, qkv, att, gu, h, tmp, q, absmax, sel;
  AttentionScratch attention;
  std::vector<AttentionQuery> queries;  // one layer's attention rows
};
Workspace& GetWorkspace() {
  thread_local Workspace w;
  return w;
}
std::vector<float>& Grow(std::vector<float>* v, size_t n) {
  if (v->size() < n) v->resize(n);
  return *v;
}

// Row loops of elementwise ops fork OpenMP threads only for batches this
// large: for decode-sized batches the fork/join costs more than it saves.
constexpr int kParallelRows = 32;

// Block of the hidden-size rotations (norm outputs, INT8 lm_head): the
// largest power of two dividing hidden, at most 128. Hidden sizes are rarely
// m·2^k with m in {1, 12, 20} (SmolLM2's 576 = 9·64), so blocks of a power
// of two serve every model; 128 already spreads a spike 11x thinner.
int HiddenRotationBlock(int hidden) {
  int block = 1;
  while (block < 128 && hidden % (2 * block) == 0) block *= 2;
  return block;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> Model::Load(
    std::shared_ptr<const GgufFile> file, const QuantOptions& quant) {
  absl::StatusOr<ModelConfig> config = ReadModelConfig(*file);
  if (!config.ok()) return config.status();
  auto model = std::unique_ptr<Model>(new Model());
  model->config_ = *config;
  model->quant_ = quant;
  absl::StatusOr<WeightSources> sources =
      ViewWeights(*file, *config, &model->weights_);
  if (!sources.ok()) return sources.status();
  model->sources_ = *std::move(sources);
  model->file_ = std::move(file);
  if (absl::Status s = model->Finish(); !s.ok()) return s;
  return model;
}

absl::StatusOr<std::unique_ptr<Model>> Model::FromWeights(
    const ModelConfig& config, ModelWeights weights,
    const QuantOptions& quant) {
  auto model = std::unique_ptr<Model>(new Model());
  model->config_ = config;
  model->quant_ = quant;
  model->given_ = std::move(weights);
  // weights_: the norms, and the matrices' shapes only.
  const ModelWeights& g = model->given_;
  ModelWeights& w = model->weights_;
  auto shape = [](const Matrix& m) { return Matrix{m.rows, m.cols, {}}; };
  w.token_embd = shape(g.token_embd);
  w.output = shape(g.output);
  w.output_norm = g.output_norm;
  for (const LayerWeights& L : g.layers) {
    w.layers.push_back({L.attn_norm, shape(L.wqkv), L.bqkv, shape(L.wo),
                        L.ffn_norm, shape(L.w_gate_up), shape(L.w_down)});
  }
  model->sources_ = MatrixSources(model->given_);
  if (absl::Status s = model->Finish(); !s.ok()) return s;
  return model;
}

absl::StatusOr<std::unique_ptr<Model>> Model::WithQuant(
    const QuantOptions& quant) const {
  if (file_) return Load(file_, quant);
  if (fp32_released_ || given_.layers.empty()) {
    return absl::FailedPreconditionError(
        "model: WithQuant after ReleaseUnquantizedWeights");
  }
  return FromWeights(config_, given_, quant);
}

absl::Status Model::Finish() {
  if (absl::Status s = ApplySmoothing(config_, quant_.smooth_scales, &weights_);
      !s.ok()) {
    return s;
  }
  if (quant_.down_hadamard) {
    absl::StatusOr<HadamardTransform> h =
        HadamardTransform::Create(config_.ffn);
    if (!h.ok()) return h.status();
    // W' = W·H row by row, so that (x·H)·W'ᵀ = x·Wᵀ.
    down_rotation_ = *h;
  }
  if (quant_.norm_hadamard) {
    absl::StatusOr<HadamardTransform> h =
        HadamardTransform::Create(HiddenRotationBlock(config_.hidden));
    if (!h.ok()) return h.status();
    norm_rotation_ = *h;
  }
  site_rows_.resize(config_.n_layers);
  for (int l = 0; l < config_.n_layers; ++l) {
    for (Site site : kAllSites) {
      RowTransform t =
          SmoothingTransform(config_, quant_.smooth_scales, {l, site});
      if (site == Site::kDown && down_rotation_) t.rotation = &*down_rotation_;
      if ((site == Site::kQkv || site == Site::kGateUp) && norm_rotation_) {
        t.rotation = &*norm_rotation_;
      }
      if (t.empty()) continue;
      site_rows_[l][int(site)] = std::make_unique<TransformedRows>(
          sources_.sites[l][int(site)].get(), std::move(t));
    }
  }
  return BuildKernels();
}

const WeightRows& Model::SiteRowsOf(int l, Site s) const {
  const auto& t = site_rows_[l][int(s)];
  return t ? *t : *sources_.sites[l][int(s)];
}

absl::Status Model::BuildKernels() {
  const QuantOptions& q = quant_;
  for (const SiteKey& k : q.fp32_sites) {
    if (k.layer < 0 || k.layer >= config_.n_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("quant: FP32 site ", SiteKeyName(k),
                       " names a layer outside 0..", config_.n_layers - 1));
    }
  }
  // Our kernels serve every INT8 batch on AVX2, AVX-512 VNNI and AMX (one
  // copy); 0 (oneDNN alone) only on a CPU without AVX2.
  packed_max_rows_ = Int8Linear::DefaultPackedMaxRows();
  // The lm_head first: its conversion holds the largest transient copy
  // (vocab x hidden, plain and reordered), best paid while little else is
  // resident yet (peak RSS = kept weights + the largest transient).
  if (absl::Status s = BuildLmHead(); !s.ok()) return s;
  std::set<std::pair<int, int>> shapes;  // (K, N) of INT8 sites
  kernels_.resize(config_.n_layers);
  for (int l = 0; l < config_.n_layers; ++l) {
    for (Site site : kAllSites) {
      const SiteKey key{l, site};
      const WeightRows& rows = SiteRowsOf(l, site);
      SiteKernels& sk = kernels_[l][int(site)];
      const bool qfem = q.w8a8 && q.fp32_sites.count(key) > 0;
      const bool guarded = q.w8a8 && !qfem &&
                           q.mode == ActQuantMode::kPerTensorStatic &&
                           q.guard_factor > 0;
      // FP32 kernels that serve (an FP32 model, FP32 QFeM sites) or catch
      // spikes (the guard) get an FP32 copy; the others' FP32 reference
      // reads the source on each (rare) call.
      if ((!q.w8a8 && !q.fp32_streamed) || (qfem && !q.qfem_bf16) || guarded) {
        Matrix& w = SiteMatrix(weights_.layers[l], site);
        w = ToMatrix(rows);
        sk.fp32 = std::make_unique<Fp32Linear>(&w);
      } else {
        sk.fp32 = std::make_unique<StreamedFp32Linear>(&rows);
        streamed_fp32_ = true;
      }
      if (!q.w8a8) continue;
      if (qfem) {
        if (q.qfem_bf16) {
          absl::StatusOr<std::unique_ptr<Bf16Linear>> b =
              Bf16Linear::Create(rows);
          if (!b.ok()) return b.status();
          sk.bf16 = *std::move(b);
        }
        continue;
      }
      float static_absmax = 0;
      if (q.mode == ActQuantMode::kPerTensorStatic) {
        auto it = q.static_absmax.find(key);
        if (it == q.static_absmax.end()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "quant: static mode needs a calibrated absmax for site ",
              SiteKeyName(key)));
        }
        static_absmax = it->second;
        if (q.guard_factor > 0) sk.guard_absmax = q.guard_factor * it->second;
      }
      const auto w4 = q.w4_sites.find(key);
      if (q.w4_everywhere || w4 != q.w4_sites.end()) {
        const int group =
            w4 != q.w4_sites.end() ? w4->second : q.w4_everywhere_group;
        W4A8Linear::Options o;
        o.mode = q.mode;
        o.static_absmax = static_absmax;
        o.group = group > 0 ? group : W4A8Linear::GroupFor(rows.cols());
        o.with_min = q.w4_with_min || q.w4_min_sites.count(key) > 0;
        if (auto h = q.w4_importance.find(key); h != q.w4_importance.end()) {
          o.importance = h->second;
        }
        // SiteRowsOf is the file's tensor only when no transform applies.
        const bool stored = group == kW4AsStored && rows.four_bit();
        absl::StatusOr<std::unique_ptr<W4A8Linear>> lin;
        if (q.w4_given && q.w4_given->Has(key)) {
          absl::StatusOr<W4Plain> given = q.w4_given->Get(key);
          if (!given.ok()) return given.status();
          if (given->n != rows.rows() || given->k != rows.cols()) {
            return absl::InvalidArgumentError(absl::StrCat(
                "quant: W4 site ", SiteKeyName(key), ": the given weights are ",
                given->n, "x", given->k, ", the site's ", rows.rows(), "x",
                rows.cols()));
          }
          lin = W4A8Linear::FromPlain(*given, o);
        } else {
          lin = stored ? W4A8Linear::FromStored(rows, o)
                       : W4A8Linear::Create(rows, o);
        }
        if (!lin.ok()) {
          return absl::Status(lin.status().code(),
                              absl::StrCat("quant: W4 site ", SiteKeyName(key),
                                           ": ", lin.status().message()));
        }
        sk.int8 = *std::move(lin);
        continue;
      }
      Int8Linear::Options o;
      o.mode = q.mode;
      o.packed_max_rows = packed_max_rows_;
      o.static_absmax = static_absmax;
      absl::StatusOr<std::unique_ptr<Int8Linear>> lin =
          Int8Linear::Create(rows, o);
      if (!lin.ok()) return lin.status();
      sk.int8 = *std::move(lin);
      shapes.insert({rows.cols(), rows.rows()});
    }
  }
  for (const auto& [k, n] : shapes) {
    absl::StatusOr<std::string> impl = WarmUpInt8(k, n);
    if (!impl.ok()) return impl.status();
    int8_impl_ = *impl;
  }
  // An FP32 model holds its FP32 embedding too (tests' references read it).
  if (!q.w8a8 && !q.fp32_streamed && weights_.token_embd.data.empty()) {
    weights_.token_embd = ToMatrix(*sources_.token_embd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Model::WarmUpInt8(int k, int n) const {
  // Our kernel runs every batch (AVX2): oneDNN has no primitive to warm.
  if (packed_max_rows_ == Int8Linear::kEveryBatch) {
    return absl::StrCat("own:", Int8Linear::PackedKernelName());
  }
  return WarmUpInt8Matmul(k, n, std::max(1, quant_.warmup_rows));
}

absl::Status Model::BuildLmHead() {
  const QuantOptions& q = quant_;
  if (q.lm_head == LmHeadPrecision::kInt8) {
    // Per-token scales (a decode batch's rows are different requests), after
    // a block Hadamard rotation: the final-norm output keeps a few massive
    // channels that would otherwise set every token's scale.
    absl::StatusOr<HadamardTransform> rot =
        HadamardTransform::Create(HiddenRotationBlock(config_.hidden));
    if (!rot.ok()) return rot.status();
    lm_head_rotation_ = *rot;
    RowTransform t;
    t.rotation = &*lm_head_rotation_;
    const TransformedRows w(&sources_.lm_head(), std::move(t));
    Int8Linear::Options o;
    o.mode = ActQuantMode::kPerTokenDynamic;
    o.packed_max_rows = packed_max_rows_;
    absl::StatusOr<std::unique_ptr<Int8Linear>> head = Int8Linear::Create(w, o);
    if (!head.ok()) return head.status();
    absl::StatusOr<std::string> impl = WarmUpInt8(w.cols(), w.rows());
    if (!impl.ok()) return impl.status();
    if (int8_impl_.empty()) int8_impl_ = *impl;
    lm_head_ = *std::move(head);
  } else if (q.lm_head == LmHeadPrecision::kBf16) {
    const WeightRows& w = sources_.lm_head();
    absl::StatusOr<std::unique_ptr<Bf16Linear>> head = Bf16Linear::Create(w);
    if (!head.ok()) return head.status();
    lm_head_ = *std::move(head);
  } else if (!q.w8a8 && q.fp32_streamed) {
    lm_head_ = std::make_unique<StreamedFp32Linear>(&sources_.lm_head());
  } else {
    Matrix& w = sources_.output ? weights_.output : weights_.token_embd;
    w = ToMatrix(sources_.lm_head());
    lm_head_ = std::make_unique<Fp32Linear>(&w);
  }
  return absl::OkStatus();
}

Model::WeightMemory Model::weight_memory() const {
  WeightMemory m;
  auto add = [&](const Linear* k) {
    if (k == nullptr) return;
    if (dynamic_cast<const Int8Linear*>(k)) {
      m.int8 += k->weight_bytes();
    } else if (dynamic_cast<const W4A8Linear*>(k)) {
      m.int4 += k->weight_bytes();
    } else if (dynamic_cast<const Bf16Linear*>(k)) {
      m.bf16 += k->weight_bytes();
    }  // FP32 kernels read weights_' matrices, counted below
  };
  for (const auto& layer : kernels_) {
    for (const SiteKernels& k : layer) {
      add(k.int8.get());
      add(k.bf16.get());
    }
  }
  add(lm_head_.get());
  auto fp32 = [&](const Matrix& w) { m.fp32 += w.data.size() * 4; };
  fp32(weights_.token_embd);
  fp32(weights_.output);
  m.fp32 += weights_.output_norm.size() * 4;
  for (const LayerWeights& L : weights_.layers) {
    for (const Matrix* w : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) fp32(*w);
    m.fp32 += (L.attn_norm.size() + L.ffn_norm.size() + L.bqkv.size()) * 4;
  }
  // The FP32 matrices a FromWeights model was given, until released.
  for (const LayerWeights& L : given_.layers) {
    for (const Matrix* w : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) fp32(*w);
  }
  fp32(given_.output);
  m.embedding = sources_.token_embd->resident_bytes();
  return m;
}

const W4A8Linear* Model::W4Kernel(const SiteKey& k) const {
  if (!IsInt8(k)) return nullptr;
  return dynamic_cast<const W4A8Linear*>(
      kernels_[k.layer][int(k.site)].int8.get());
}

int Model::W4Group(const SiteKey& k) const {
  const W4A8Linear* w4 = W4Kernel(k);
  return w4 != nullptr ? w4->group() : 0;
}

bool Model::W4HasMin(const SiteKey& k) const {
  const W4A8Linear* w4 = W4Kernel(k);
  return w4 != nullptr && w4->has_min();
}

bool Model::W4ImportanceWeighted(const SiteKey& k) const {
  const W4A8Linear* w4 = W4Kernel(k);
  return w4 != nullptr && w4->importance_weighted();
}

bool Model::W4Given(const SiteKey& k) const {
  return W4Kernel(k) != nullptr && quant_.w4_given != nullptr &&
         quant_.w4_given->Has(k);
}

int Model::w4_site_count() const {
  int n = 0;
  for (int l = 0; l < config_.n_layers; ++l) {
    for (Site s : kAllSites) n += W4Group({l, s}) > 0;
  }
  return n;
}

bool Model::IsInt8(const SiteKey& k) const {
  return k.layer >= 0 && k.layer < config_.n_layers &&
         kernels_[k.layer][int(k.site)].int8 != nullptr;
}

void Model::RunSite(int layer, Site site, const float* x, int m,
                    absl::Span<const int> bounds, const ForwardOptions& opt,
                    std::vector<float>* absmax, float* y) const {
  const SiteKernels& k = kernels_[layer][int(site)];
  const Linear& fp32 = *k.fp32;
  const int width = fp32.in_features();
  const bool int8 = k.int8 != nullptr && !opt.all_fp32 &&
                    !(opt.fp32_sites && opt.fp32_sites->count({layer, site}));
  const float* row_absmax = nullptr;
  if (opt.observer != nullptr || int8) {
    absmax->resize(m);
    ParallelRows(m, m >= kParallelRows, [&](int r) {
      (*absmax)[r] = AbsMax(x + size_t(r) * width, width);
    });
    row_absmax = absmax->data();
    if (opt.observer != nullptr) {
      opt.observer->OnSiteInput(layer, site, x, m, width, *absmax, bounds);
    }
  }
  if (!int8) {
    const Linear& precise = k.bf16 && !opt.all_fp32 ? *k.bf16 : fp32;
    precise.Forward({x, m, bounds, nullptr}, y);
    return;
  }
  k.int8->Forward({x, m, bounds, row_absmax}, y);
  if (k.guard_absmax <= 0) return;
  // Spike guard: recompute the rows the static range would clip, in FP32.
  int fallback = 0;
  const int out = fp32.out_features();
  for (int r = 0; r < m; ++r) {
    if ((*absmax)[r] <= k.guard_absmax) continue;
    const int one[2] = {0, 1};
    fp32.Forward({x + size_t(r) * width, 1, one, nullptr}, y + size_t(r) * out);
    ++fallback;
  }
  if (fallback > 0 && opt.observer != nullptr) {
    opt.observer->OnGuardFallback(layer, site, fallback);
  }
}

int Model::HeadInput(absl::Span<const BatchEntry> batch, const float* x,
                     std::vector<float>* sel) const {
  const ModelConfig& c = config_;
  const int H = c.hidden;
  int n_out = 0, r = 0;
  for (const BatchEntry& b : batch) {
    const int n = int(b.tokens.size());
    for (int i = 0; i < n; ++i, ++r) {
      if (!b.all_logits && (i != n - 1 || !b.last_logits)) continue;
      Grow(sel, size_t(n_out + 1) * H);
      RmsNorm(&x[size_t(r) * H], weights_.output_norm.data(), H, c.rms_eps,
              &(*sel)[size_t(n_out) * H]);
      ++n_out;
    }
  }
  if (n_out > 0 && lm_head_rotation_) {
    // [n_out][hidden] viewed as [n_out * hidden / block][block].
    lm_head_rotation_->Apply(sel->data(),
                             n_out * H / lm_head_rotation_->size());
  }
  return n_out;
}

int64_t Model::ReleaseUnquantizedWeights() {
  int64_t freed = 0;
  auto release = [&](Matrix& w) {
    freed += int64_t(w.data.size() * sizeof(float));
    std::vector<float>().swap(w.data);  // shape kept
  };
  // The embedding stays: Forward reads its rows (sources_.token_embd; a
  // GGUF embedding is a copy of its own, not in the mapping).
  for (LayerWeights& L : given_.layers) {
    for (Matrix* m : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) release(*m);
  }
  release(given_.output);
  file_.reset();
  fp32_released_ = streamed_fp32_;
  return freed;
}

absl::StatusOr<std::unique_ptr<KvPool>> Model::NewKvPool(
    int num_blocks, int block_tokens) const {
  KvPool::Options o;
  o.n_layers = config_.n_layers;
  o.kv_dim = config_.kv_dim();
  o.block_tokens = block_tokens;
  o.num_blocks = num_blocks;
  o.bf16 = quant_.kv_bf16;
  return KvPool::Create(o);
}

void Model::PositionRow(const LayerWeights& L, int l, SequenceKv* kv, int pos,
                        const float* cos_sin, float* row, float* q) const {
  const ModelConfig& c = config_;
  float* k = row + c.q_dim();
  float* v = k + c.kv_dim();
  if (!L.bqkv.empty()) {
    for (size_t j = 0; j < L.bqkv.size(); ++j) row[j] += L.bqkv[j];
  }
  ApplyRope(row, c.n_heads, c.head_dim, c.rope_dims, cos_sin, c.rope_neox);
  ApplyRope(k, c.n_kv_heads, c.head_dim, c.rope_dims, cos_sin, c.rope_neox);
  kv->WriteK(l, pos, k);
  kv->WriteV(l, pos, v);
  std::memcpy(q, row, c.q_dim() * sizeof(float));
}

void Model::AttentionQueries(absl::Span<const BatchEntry> batch,
                             const StepBuffers& b,
                             std::vector<AttentionQuery>* queries) const {
  const int q_dim = config_.q_dim();
  queries->clear();
  int r0 = 0;
  for (const BatchEntry& e : batch) {
    const int n = int(e.tokens.size());
    const size_t off = size_t(r0) * q_dim;
    queries->push_back({e.kv, &b.q[off], n, e.kv->length(), &b.att[off]});
    r0 += n;
  }
}

void Model::NormRows(const std::vector<float>& gain, int m, const float* x,
                     float* xn) const {
  const ModelConfig& c = config_;
  const int H = c.hidden;
  auto row = [&](int r) {
    RmsNorm(&x[size_t(r) * H], gain.data(), H, c.rms_eps, &xn[size_t(r) * H]);
  };
  if (m >= kParallelRows) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < m; ++r) row(r);
  } else {
    for (int r = 0; r < m; ++r) row(r);
  }
  // [m][hidden] viewed as [m * hidden / size][size] for the rotation.
  if (norm_rotation_) norm_rotation_->Apply(xn, m * H / norm_rotation_->size());
}

// The layers of a Forward call, each step over the OpenMP team where its
// rows are many enough (prefill; and decode where LayersInTeam cannot run).
void Model::Layers(absl::Span<const BatchEntry> batch,
                   absl::Span<const int> bounds, const int* row_pos,
                   const ForwardOptions& opt, const StepBuffers& b) const {
  const ModelConfig& c = config_;
  const int m = bounds.back();
  const int H = c.hidden, qkv_w = c.q_dim() + 2 * c.kv_dim();
  float *x = b.x, *xn = b.xn, *qkv = b.qkv, *att = b.att, *gu = b.gu, *h = b.h,
        *tmp = b.tmp;
  const float* rope = b.rope;
  std::vector<float>& absmax = *b.absmax;
  AttentionScratch& scratch = *b.attention;
  std::vector<AttentionQuery>& queries = *b.queries;
  using Clock = std::chrono::steady_clock;
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = weights_.layers[l];
    // Attention block.
    const Clock::time_point t0 =
        opt.observer ? Clock::now() : Clock::time_point();
    NormRows(L.attn_norm, m, x, xn);
    RunSite(l, Site::kQkv, xn, m, bounds, opt, &absmax, qkv);
    int r0 = 0;
    for (const BatchEntry& e : batch) {
      const int n = int(e.tokens.size());
      ParallelRows(n, n >= kParallelRows, [&](int i) {
        const int r = r0 + i;
        PositionRow(L, l, e.kv, row_pos[r], &rope[size_t(r) * c.rope_dims],
                    &qkv[size_t(r) * qkv_w], &b.q[size_t(r) * c.q_dim()]);
      });
      r0 += n;
    }
    AttentionQueries(batch, b, &queries);
    Attention(c, l, queries, &scratch);
    RunSite(l, Site::kO, att, m, bounds, opt, &absmax, tmp);
    AddResidual(tmp, m, H, x);

    // Feed-forward block.
    const Clock::time_point t1 =
        opt.observer ? Clock::now() : Clock::time_point();
    if (opt.observer)
      opt.observer->OnLayerPart(l, LayerPart::kAttention,
                                SecondsBetween(t0, t1));
    NormRows(L.ffn_norm, m, x, xn);
    RunSite(l, Site::kGateUp, xn, m, bounds, opt, &absmax, gu);
    ParallelRows(m, m >= kParallelRows, [&](int r) {
      const float* g = &gu[size_t(r) * 2 * c.ffn];
      SiluMul(g, g + c.ffn, c.ffn, &h[size_t(r) * c.ffn]);
    });
    if (down_rotation_) down_rotation_->Apply(h, m);
    RunSite(l, Site::kDown, h, m, bounds, opt, &absmax, tmp);
    AddResidual(tmp, m, H, x);
    if (opt.observer)
      opt.observer->OnLayerPart(l, LayerPart::kFfn,
                                SecondsBetween(t1, Clock::now()));
  }
}

absl::Status Model::Forward(absl::Span<const BatchEntry> batch,
                            std::vector<float>* logits,
                            const ForwardOptions& opt) const {
  const ModelConfig& c = config_;
  if (fp32_released_ &&
      (opt.all_fp32 || (opt.fp32_sites && !opt.fp32_sites->empty()))) {
    return absl::FailedPreconditionError(
        "model: an FP32 forward after ReleaseUnquantizedWeights (the FP32 "
        "copies of the quantized matrices are gone)");
  }
  // Validate everything before touching any cache.
  int m = 0;
  for (size_t e = 0; e < batch.size(); ++e) {
    const BatchEntry& b = batch[e];
    if (b.kv == nullptr || b.tokens.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("forward: batch entry ", e, " has no cache or tokens"));
    }
    // Two entries of one sequence would both write from its current length
    // (overwriting each other's KV) and then advance it by their sum.
    for (size_t o = 0; o < e; ++o) {
      if (batch[o].kv == b.kv) {
        return absl::InvalidArgumentError(absl::StrCat(
            "forward: batch entries ", o, " and ", e,
            " are the same sequence; give its tokens as one entry"));
      }
    }
    for (int32_t t : b.tokens) {
      if (t < 0 || t >= c.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("forward: token id ", t,
                         " outside the vocabulary [0, ", c.vocab_size, ")"));
      }
    }
    const int end = b.kv->length() + int(b.tokens.size());
    if (end > c.context_length) {
      return absl::OutOfRangeError(absl::StrCat(
          "forward: sequence would reach ", end,
          " positions, beyond the context length ", c.context_length));
    }
    m += int(b.tokens.size());
  }
  // Reserve KV room for every entry, rolling back on failure.
  std::vector<int> old_caps;
  for (size_t e = 0; e < batch.size(); ++e) {
    const BatchEntry& b = batch[e];
    if (absl::Status s = b.kv->Reserve(b.kv->length() + int(b.tokens.size()));
        !s.ok()) {
      return s;  // blocks reserved for earlier entries stay with them; the
                 // lengths are untouched, so the caches are unchanged.
    }
  }

  const int H = c.hidden, qkv_w = c.q_dim() + 2 * c.kv_dim();
  // Activations of all rows: [m][width].
  // Activations of all rows, [m][width], in a per-thread workspace that
  // only grows (fresh vectors would zero-fill ~17 MB per 512-row call).
  Workspace& ws = GetWorkspace();
  std::vector<float>& x = Grow(&ws.x, size_t(m) * H);
  std::vector<float>& xn = Grow(&ws.xn, size_t(m) * H);
  std::vector<float>& qkv = Grow(&ws.qkv, size_t(m) * qkv_w);
  std::vector<float>& att = Grow(&ws.att, size_t(m) * c.q_dim());
  std::vector<float>& gu = Grow(&ws.gu, size_t(m) * 2 * c.ffn);
  std::vector<float>& h = Grow(&ws.h, size_t(m) * c.ffn);
  std::vector<float>& tmp = Grow(&ws.tmp, size_t(m) * H);

  // Row r is at position row_pos[r]; entry e owns rows [bounds[e],
  // bounds[e+1]).
  std::vector<int> row_pos(m);
  std::vector<float> rope(size_t(m) * c.rope_dims);  // [m][rope_dims] cos|sin
  std::vector<int> bounds = {0};
  for (const BatchEntry& b : batch) {
    bounds.push_back(bounds.back() + int(b.tokens.size()));
  }
  {
    int r = 0;
    for (const BatchEntry& b : batch) {
      for (size_t i = 0; i < b.tokens.size(); ++i, ++r) {
        row_pos[r] = b.kv->length() + int(i);
        RopeAngles(
            row_pos[r], c.rope_dims, c.rope_base, c.rope_freq_scale,
            c.rope_freq_factors.empty() ? nullptr : c.rope_freq_factors.data(),
            &rope[size_t(r) * c.rope_dims]);
        sources_.token_embd->Row(b.tokens[i], &x[size_t(r) * H]);
      }
    }
  }

  // Decode batches run every layer (and the lm_head, when its kernel has
  // the form) in one parallel region (model_team.cc).
  const bool team = TeamEligible(m, opt);
  int logit_rows = 0;
  for (const BatchEntry& b : batch) {
    logit_rows += b.all_logits ? int(b.tokens.size()) : b.last_logits ? 1 : 0;
  }
  const bool head_in_team =
      team && logit_rows > 0 && lm_head_->TeamUnits(logit_rows) > 0;
  const StepBuffers sb{x.data(),      xn.data(),
                       qkv.data(),    Grow(&ws.q, size_t(m) * c.q_dim()).data(),
                       att.data(),    gu.data(),
                       h.data(),      tmp.data(),
                       rope.data(),   &ws.absmax,
                       &ws.attention, &ws.queries,
                       &ws.sel};
  if (team) {
    LayersInTeam(batch, bounds, row_pos.data(), opt, sb,
                 head_in_team ? logits : nullptr);
  } else {
    Layers(batch, bounds, row_pos.data(), opt, sb);
  }

  // Final norm and lm_head on the rows that want logits.
  if (!head_in_team) {
    const int n_out = HeadInput(batch, x.data(), &ws.sel);
    logits->resize(size_t(n_out) * c.vocab_size);
    if (n_out > 0) {
      const int out_bounds[2] = {0, n_out};
      lm_head_->Forward({ws.sel.data(), n_out, out_bounds}, logits->data());
    }
  }
  for (const BatchEntry& b : batch) {
    b.kv->set_length(b.kv->length() + int(b.tokens.size()));
  }
  return absl::OkStatus();
}

const char* LmHeadPrecisionName(LmHeadPrecision p) {
  switch (p) {
    case LmHeadPrecision::kFp32:
      return "fp32";
    case LmHeadPrecision::kBf16:
      return "bf16";
    case LmHeadPrecision::kInt8:
      return "int8";
  }
  return "?";
}

LmHeadPrecision FastestLmHead() { return LmHeadPrecision::kInt8; }

absl::StatusOr<LmHeadPrecision> ParseLmHeadPrecision(absl::string_view name) {
  if (name == "auto") return FastestLmHead();
  for (LmHeadPrecision p : {LmHeadPrecision::kFp32, LmHeadPrecision::kBf16,
                            LmHeadPrecision::kInt8}) {
    if (name == LmHeadPrecisionName(p)) return p;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("lm_head precision must be auto, fp32, bf16 or int8, got \"",
                   name, "\""));
}

absl::StatusOr<int> ParseW4Group(absl::string_view name) {
  if (name == "auto") return 0;
  if (name == "stored") return kW4AsStored;
  if (name == "32") return 32;
  if (name == "64") return 64;
  if (name == "128") return 128;
  return absl::InvalidArgumentError(absl::StrCat(
      "W4 group must be auto, stored, 32, 64 or 128, got \"", name, "\""));
}

}  // namespace spikeserve
