#include "runtime/ops.h"

#include <cmath>

namespace spikeserve {

void RmsNorm(const float* x, const float* gain, int n, float eps, float* y) {
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += double(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(float(sum / n) + eps);
  for (int i = 0; i < n; ++i) y[i] = x[i] * scale * gain[i];
}

void Rope(float* x, int n_heads, int head_dim, int rope_dims, int pos,
          float base) {
  // theta is advanced multiplicatively, as llama.cpp does, so angles agree
  // to the last bit of float rounding with the reference.
  const float theta_scale = std::pow(base, -2.0f / rope_dims);
  float theta = float(pos);
  for (int i = 0; i < rope_dims / 2; ++i, theta *= theta_scale) {
    const float c = std::cos(theta), s = std::sin(theta);
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + h * head_dim + 2 * i;
      const float x0 = v[0], x1 = v[1];
      v[0] = x0 * c - x1 * s;
      v[1] = x0 * s + x1 * c;
    }
  }
}

void SiluMul(const float* gate, const float* up, int n, float* h) {
  for (int i = 0; i < n; ++i) {
    const float g = gate[i];
    h[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void Softmax(float* x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace spikeserve
