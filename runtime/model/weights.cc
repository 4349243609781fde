#include "runtime/model/weights.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/gguf/dequantize.h"

namespace spikeserve {
namespace {

// Dequantizes tensor `name`, which must have ggml dims `dims` (innermost
// first), into `out` starting at element `offset`.
absl::Status LoadInto(const GgufFile& f, const std::string& name,
                      std::vector<uint64_t> dims, float* out) {
  absl::StatusOr<const GgufTensor*> t = f.GetTensor(name);
  if (!t.ok()) return t.status();
  if ((*t)->dims != dims) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' has shape [", absl::StrJoin((*t)->dims, ", "),
        "], expected [", absl::StrJoin(dims, ", "), "]"));
  }
  if (!IsDequantizable((*t)->type)) {
    return DequantizeTensor(**t).status();  // the Unimplemented message
  }
  DequantizeRow((*t)->type, (*t)->data, out, (*t)->num_elements);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> LoadVector(const GgufFile& f,
                                              const std::string& name, int n) {
  std::vector<float> v(n);
  if (absl::Status s = LoadInto(f, name, {uint64_t(n)}, v.data()); !s.ok()) {
    return s;
  }
  return v;
}

// Stacks the [rows_i][cols] matrices `names` vertically into one Matrix.
absl::StatusOr<Matrix> LoadStacked(const GgufFile& f,
                                   const std::vector<std::string>& names,
                                   const std::vector<int>& rows, int cols) {
  Matrix m;
  m.cols = cols;
  for (int r : rows) m.rows += r;
  m.data.resize(size_t(m.rows) * cols);
  size_t at = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    if (absl::Status s =
            LoadInto(f, names[i], {uint64_t(cols), uint64_t(rows[i])},
                     m.data.data() + at);
        !s.ok()) {
      return s;
    }
    at += size_t(rows[i]) * cols;
  }
  return m;
}

}  // namespace

absl::StatusOr<ModelWeights> LoadWeights(const GgufFile& f,
                                         const ModelConfig& c) {
  ModelWeights w;
  auto embd = LoadStacked(f, {"token_embd.weight"}, {c.vocab_size}, c.hidden);
  if (!embd.ok()) return embd.status();
  w.token_embd = *std::move(embd);
  auto norm = LoadVector(f, "output_norm.weight", c.hidden);
  if (!norm.ok()) return norm.status();
  w.output_norm = *std::move(norm);
  if (!c.tied_output) {
    auto out = LoadStacked(f, {"output.weight"}, {c.vocab_size}, c.hidden);
    if (!out.ok()) return out.status();
    w.output = *std::move(out);
  }
  w.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[l];
    const std::string b = absl::StrCat("blk.", l, ".");
    auto an = LoadVector(f, b + "attn_norm.weight", c.hidden);
    if (!an.ok()) return an.status();
    L.attn_norm = *std::move(an);
    auto fn = LoadVector(f, b + "ffn_norm.weight", c.hidden);
    if (!fn.ok()) return fn.status();
    L.ffn_norm = *std::move(fn);
    auto qkv = LoadStacked(
        f, {b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"},
        {c.q_dim(), c.kv_dim(), c.kv_dim()}, c.hidden);
    if (!qkv.ok()) return qkv.status();
    L.wqkv = *std::move(qkv);
    auto wo = LoadStacked(f, {b + "attn_output.weight"}, {c.hidden}, c.q_dim());
    if (!wo.ok()) return wo.status();
    L.wo = *std::move(wo);
    auto gu = LoadStacked(f, {b + "ffn_gate.weight", b + "ffn_up.weight"},
                          {c.ffn, c.ffn}, c.hidden);
    if (!gu.ok()) return gu.status();
    L.w_gate_up = *std::move(gu);
    auto down = LoadStacked(f, {b + "ffn_down.weight"}, {c.hidden}, c.ffn);
    if (!down.ok()) return down.status();
    L.w_down = *std::move(down);
  }
  return w;
}

}  // namespace spikeserve
