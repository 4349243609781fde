// The 4-bit weights a quant plan carries beside it: the W4A8 sites'
// codes and group scales as spikeserve-calibrate quantized them (GPTQ,
// gptq.h), for the sites' rows as the plan transforms them (smoothing and
// rotations), so that the server serves them instead of re-quantizing.
//
// A GGUF file (version 3). Metadata: spikeserve.w4_weights.model_hash =
// the plan's model fingerprint hash. Per site, with NAME = "blk.L.SITE"
// (SITE = qkv, o, gate_up, down) and the site's weight [N][K] in groups of G:
//   NAME.w4_codes   I8  dims {K/2, N}: two codes per byte, the even k in
//                                      the low nibble
//   NAME.w4_scales  F16 dims {K/G, N}: half scales
//   NAME.w4_mins    F16 dims {K/G, N}: half minimums (asymmetric groups)
#ifndef SPIKESERVE_RUNTIME_QUANT_W4_WEIGHTS_FILE_H_
#define SPIKESERVE_RUNTIME_QUANT_W4_WEIGHTS_FILE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_reader.h"
#include "runtime/linear/w4_gemm.h"
#include "runtime/model/model.h"
#include "runtime/model/site.h"

namespace spikeserve {

absl::Status WriteW4WeightsFile(const std::string& path,
                                const std::string& model_hash,
                                const std::map<SiteKey, W4Plain>& sites);

// Given weights held in memory (the calibration's, before it writes them).
class W4WeightsMap final : public GivenW4Weights {
 public:
  std::map<SiteKey, W4Plain> sites;
  bool Has(const SiteKey& k) const override { return sites.count(k) > 0; }
  absl::StatusOr<W4Plain> Get(const SiteKey& k) const override;
};

class W4WeightsFile final : public GivenW4Weights {
 public:
  // Opens `path` and checks that it was made for the model `model_hash`
  // names. Errors name the path and the problem.
  static absl::StatusOr<std::shared_ptr<const W4WeightsFile>> Open(
      const std::string& path, const std::string& model_hash);

  bool Has(const SiteKey& k) const override;
  // The site's weights; InvalidArgument naming the tensor whose type or
  // shape is wrong. The file's pages are given back after reading.
  absl::StatusOr<W4Plain> Get(const SiteKey& k) const override;

 private:
  explicit W4WeightsFile(std::unique_ptr<GgufFile> file, std::string path)
      : file_(std::move(file)), path_(std::move(path)) {}
  std::unique_ptr<GgufFile> file_;
  std::string path_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_QUANT_W4_WEIGHTS_FILE_H_
