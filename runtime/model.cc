#include "runtime/model.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/attention.h"
#include "runtime/ops.h"

namespace spikeserve {

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const GgufFile& file) {
  auto model = std::unique_ptr<Model>(new Model());
  absl::StatusOr<ModelConfig> config = ReadModelConfig(file);
  if (!config.ok()) return config.status();
  model->config_ = *config;
  absl::StatusOr<ModelWeights> weights = LoadWeights(file, model->config_);
  if (!weights.ok()) return weights.status();
  model->weights_ = *std::move(weights);
  for (const LayerWeights& L : model->weights_.layers) {
    LayerKernels k;
    k.qkv = std::make_unique<Fp32Linear>(&L.wqkv);
    k.o = std::make_unique<Fp32Linear>(&L.wo);
    k.gate_up = std::make_unique<Fp32Linear>(&L.w_gate_up);
    k.down = std::make_unique<Fp32Linear>(&L.w_down);
    model->kernels_.push_back(std::move(k));
  }
  model->lm_head_ = std::make_unique<Fp32Linear>(&model->weights_.lm_head());
  return model;
}

absl::StatusOr<std::unique_ptr<KvPool>> Model::NewKvPool(
    int num_blocks, int block_tokens) const {
  KvPool::Options o;
  o.n_layers = config_.n_layers;
  o.kv_dim = config_.kv_dim();
  o.block_tokens = block_tokens;
  o.num_blocks = num_blocks;
  return KvPool::Create(o);
}

absl::Status Model::Forward(absl::Span<const BatchEntry> batch,
                            std::vector<float>* logits) const {
  const ModelConfig& c = config_;
  // Validate everything before touching any cache.
  int m = 0;
  for (size_t e = 0; e < batch.size(); ++e) {
    const BatchEntry& b = batch[e];
    if (b.kv == nullptr || b.tokens.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("forward: batch entry ", e, " has no cache or tokens"));
    }
    for (int32_t t : b.tokens) {
      if (t < 0 || t >= c.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "forward: token id ", t, " outside the vocabulary [0, ",
            c.vocab_size, ")"));
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
  std::vector<float> x(size_t(m) * H), xn(size_t(m) * H);
  std::vector<float> qkv(size_t(m) * qkv_w), att(size_t(m) * c.q_dim());
  std::vector<float> gu(size_t(m) * 2 * c.ffn), h(size_t(m) * c.ffn);
  std::vector<float> tmp(size_t(m) * H);
  AttentionScratch scratch;

  // Row r is at position row_pos[r]; entry e owns rows [bounds[e],
  // bounds[e+1]).
  std::vector<int> row_pos(m);
  std::vector<int> bounds = {0};
  for (const BatchEntry& b : batch) {
    bounds.push_back(bounds.back() + int(b.tokens.size()));
  }
  {
    int r = 0;
    for (const BatchEntry& b : batch) {
      for (size_t i = 0; i < b.tokens.size(); ++i, ++r) {
        row_pos[r] = b.kv->length() + int(i);
        std::memcpy(&x[size_t(r) * H], weights_.token_embd.row(b.tokens[i]),
                    H * sizeof(float));
      }
    }
  }

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = weights_.layers[l];
    const LayerKernels& K = kernels_[l];
    // Attention block.
    for (int r = 0; r < m; ++r) {
      RmsNorm(&x[size_t(r) * H], L.attn_norm.data(), H, c.rms_eps,
              &xn[size_t(r) * H]);
    }
    K.qkv->Forward({xn.data(), m, bounds}, qkv.data());
    int r0 = 0;
    for (const BatchEntry& b : batch) {
      const int n = int(b.tokens.size());
      for (int i = 0; i < n; ++i) {
        float* row = &qkv[size_t(r0 + i) * qkv_w];
        float* q = row;
        float* k = row + c.q_dim();
        float* v = k + c.kv_dim();
        const int pos = row_pos[r0 + i];
        Rope(q, c.n_heads, c.head_dim, c.rope_dims, pos, c.rope_base);
        Rope(k, c.n_kv_heads, c.head_dim, c.rope_dims, pos, c.rope_base);
        std::memcpy(b.kv->k_row(l, pos), k, c.kv_dim() * sizeof(float));
        std::memcpy(b.kv->v_row(l, pos), v, c.kv_dim() * sizeof(float));
      }
      // Queries are strided inside qkv rows; attention wants [n][q_dim].
      std::vector<float> q(size_t(n) * c.q_dim());
      for (int i = 0; i < n; ++i) {
        std::memcpy(&q[size_t(i) * c.q_dim()], &qkv[size_t(r0 + i) * qkv_w],
                    c.q_dim() * sizeof(float));
      }
      CausalAttention(c, *b.kv, l, q.data(), n, b.kv->length(),
                      &att[size_t(r0) * c.q_dim()], &scratch);
      r0 += n;
    }
    K.o->Forward({att.data(), m, bounds}, tmp.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];

    // Feed-forward block.
    for (int r = 0; r < m; ++r) {
      RmsNorm(&x[size_t(r) * H], L.ffn_norm.data(), H, c.rms_eps,
              &xn[size_t(r) * H]);
    }
    K.gate_up->Forward({xn.data(), m, bounds}, gu.data());
    for (int r = 0; r < m; ++r) {
      const float* g = &gu[size_t(r) * 2 * c.ffn];
      SiluMul(g, g + c.ffn, c.ffn, &h[size_t(r) * c.ffn]);
    }
    K.down->Forward({h.data(), m, bounds}, tmp.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
  }

  // Final norm and lm_head on the rows that want logits.
  std::vector<float> sel;
  int n_out = 0;
  {
    int r = 0;
    for (const BatchEntry& b : batch) {
      const int n = int(b.tokens.size());
      for (int i = 0; i < n; ++i, ++r) {
        if (!b.all_logits && i != n - 1) continue;
        sel.resize(size_t(n_out + 1) * H);
        RmsNorm(&x[size_t(r) * H], weights_.output_norm.data(), H, c.rms_eps,
                &sel[size_t(n_out) * H]);
        ++n_out;
      }
    }
  }
  logits->resize(size_t(n_out) * c.vocab_size);
  const int out_bounds[2] = {0, n_out};
  lm_head_->Forward({sel.data(), n_out, out_bounds}, logits->data());
  for (const BatchEntry& b : batch) {
    b.kv->set_length(b.kv->length() + int(b.tokens.size()));
  }
  return absl::OkStatus();
}

}  // namespace spikeserve
