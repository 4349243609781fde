#include "runtime/model/weights.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/gguf/tensor_view.h"
#include "runtime/model/site_rows.h"

namespace spikeserve {
namespace {

absl::StatusOr<std::vector<float>> LoadVector(const GgufFile& f,
                                              const std::string& name, int n) {
  absl::StatusOr<TensorView> v = ViewTensor(f, name, 1, n);
  if (!v.ok()) return v.status();
  std::vector<float> out(n);
  v->DequantizeRow(0, out.data());
  return out;
}

// The [rows_i][cols] tensors `names`, stacked.
absl::StatusOr<std::unique_ptr<WeightRows>> View(
    const GgufFile& f, const std::vector<std::string>& names,
    const std::vector<int>& rows, int cols) {
  std::vector<std::unique_ptr<WeightRows>> parts;
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StatusOr<TensorView> v = ViewTensor(f, names[i], rows[i], cols);
    if (!v.ok()) return v.status();
    parts.push_back(std::make_unique<TensorRows>(*std::move(v), &f));
  }
  if (parts.size() == 1) return std::move(parts[0]);
  return std::make_unique<StackedRows>(std::move(parts));
}

}  // namespace

absl::StatusOr<WeightSources> ViewWeights(const GgufFile& f,
                                          const ModelConfig& c,
                                          ModelWeights* w) {
  WeightSources s;
  absl::StatusOr<TensorView> embd =
      ViewTensor(f, "token_embd.weight", c.vocab_size, c.hidden);
  if (!embd.ok()) return embd.status();
  s.token_embd = TensorRows::Copy(*embd);
  auto norm = LoadVector(f, "output_norm.weight", c.hidden);
  if (!norm.ok()) return norm.status();
  w->output_norm = *std::move(norm);
  w->token_embd = Matrix{c.vocab_size, c.hidden, {}};
  if (!c.tied_output) {
    auto out = View(f, {"output.weight"}, {c.vocab_size}, c.hidden);
    if (!out.ok()) return out.status();
    s.output = *std::move(out);
    w->output = Matrix{c.vocab_size, c.hidden, {}};
  }
  w->layers.resize(c.n_layers);
  s.sites.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w->layers[l];
    const std::string b = absl::StrCat("blk.", l, ".");
    auto an = LoadVector(f, b + "attn_norm.weight", c.hidden);
    if (!an.ok()) return an.status();
    L.attn_norm = *std::move(an);
    auto fn = LoadVector(f, b + "ffn_norm.weight", c.hidden);
    if (!fn.ok()) return fn.status();
    L.ffn_norm = *std::move(fn);
    // q/k/v biases: required by Qwen2, optional elsewhere (a LLaMA model
    // converted with attention_bias = true has them; a missing one is 0).
    const bool any_qkv_bias = c.qkv_bias ||
                              f.FindTensor(b + "attn_q.bias") != nullptr ||
                              f.FindTensor(b + "attn_k.bias") != nullptr ||
                              f.FindTensor(b + "attn_v.bias") != nullptr;
    if (any_qkv_bias) {
      for (const auto& [name, n] :
           {std::pair<const char*, int>{"attn_q.bias", c.q_dim()},
            {"attn_k.bias", c.kv_dim()},
            {"attn_v.bias", c.kv_dim()}}) {
        if (!c.qkv_bias && f.FindTensor(b + name) == nullptr) {
          L.bqkv.insert(L.bqkv.end(), n, 0.0f);
          continue;
        }
        auto bias = LoadVector(f, b + name, n);
        if (!bias.ok()) return bias.status();
        L.bqkv.insert(L.bqkv.end(), bias->begin(), bias->end());
      }
    }
    // Biases the forward pass does not add (attention_bias's output bias,
    // mlp_bias) would be dropped without a word: refuse them.
    for (const char* name : {"attn_output.bias", "ffn_gate.bias", "ffn_up.bias",
                             "ffn_down.bias"}) {
      if (f.FindTensor(b + name) != nullptr) {
        return absl::UnimplementedError(absl::StrCat(
            "tensor '", b, name,
            "': biases on the attention output and the feed-forward "
            "projections are not supported (only q/k/v biases are)"));
      }
    }
    auto qkv =
        View(f, {b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"},
             {c.q_dim(), c.kv_dim(), c.kv_dim()}, c.hidden);
    if (!qkv.ok()) return qkv.status();
    auto wo = View(f, {b + "attn_output.weight"}, {c.hidden}, c.q_dim());
    if (!wo.ok()) return wo.status();
    auto gu = View(f, {b + "ffn_gate.weight", b + "ffn_up.weight"},
                   {c.ffn, c.ffn}, c.hidden);
    if (!gu.ok()) return gu.status();
    auto down = View(f, {b + "ffn_down.weight"}, {c.hidden}, c.ffn);
    if (!down.ok()) return down.status();
    s.sites[l][int(Site::kQkv)] = *std::move(qkv);
    s.sites[l][int(Site::kO)] = *std::move(wo);
    s.sites[l][int(Site::kGateUp)] = *std::move(gu);
    s.sites[l][int(Site::kDown)] = *std::move(down);
    L.wqkv = Matrix{c.q_dim() + 2 * c.kv_dim(), c.hidden, {}};
    L.wo = Matrix{c.hidden, c.q_dim(), {}};
    L.w_gate_up = Matrix{2 * c.ffn, c.hidden, {}};
    L.w_down = Matrix{c.hidden, c.ffn, {}};
  }
  return s;
}

WeightSources MatrixSources(const ModelWeights& w) {
  WeightSources s;
  s.token_embd = std::make_unique<MatrixRows>(w.token_embd);
  if (w.output.rows > 0) s.output = std::make_unique<MatrixRows>(w.output);
  s.sites.resize(w.layers.size());
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    s.sites[l][int(Site::kQkv)] = std::make_unique<MatrixRows>(L.wqkv);
    s.sites[l][int(Site::kO)] = std::make_unique<MatrixRows>(L.wo);
    s.sites[l][int(Site::kGateUp)] = std::make_unique<MatrixRows>(L.w_gate_up);
    s.sites[l][int(Site::kDown)] = std::make_unique<MatrixRows>(L.w_down);
  }
  return s;
}

absl::StatusOr<ModelWeights> LoadWeights(const GgufFile& f,
                                         const ModelConfig& c) {
  ModelWeights w;
  absl::StatusOr<WeightSources> s = ViewWeights(f, c, &w);
  if (!s.ok()) return s.status();
  w.token_embd = ToMatrix(*s->token_embd);
  if (s->output) w.output = ToMatrix(*s->output);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[l];
    L.wqkv = ToMatrix(*s->sites[l][int(Site::kQkv)]);
    L.wo = ToMatrix(*s->sites[l][int(Site::kO)]);
    L.w_gate_up = ToMatrix(*s->sites[l][int(Site::kGateUp)]);
    L.w_down = ToMatrix(*s->sites[l][int(Site::kDown)]);
  }
  return w;
}

}  // namespace spikeserve
