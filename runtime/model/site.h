// Names for the places where the model's linear layers read their input
// (method.md §2). Metrics, quant plans and reports use these names.
#ifndef SPIKESERVE_RUNTIME_MODEL_SITE_H_
#define SPIKESERVE_RUNTIME_MODEL_SITE_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace spikeserve {

// The four distinct linear inputs of a decoder layer.
enum class Site {
  kQkv = 0,     // RMSNorm output, read by q, k and v
  kO = 1,       // attention output, read by o_proj
  kGateUp = 2,  // RMSNorm output, read by gate and up
  kDown = 3,    // SiLU(gate) * up, read by down_proj: where spikes live
};
inline constexpr int kNumSites = 4;
inline constexpr Site kAllSites[] = {Site::kQkv, Site::kO, Site::kGateUp,
                                     Site::kDown};

// The two halves of a decoder layer, for timing.
enum class LayerPart { kAttention = 0, kFfn = 1 };

inline const char* SiteName(Site s) {
  static constexpr const char* kNames[] = {"qkv", "o", "gate_up", "down"};
  return kNames[int(s)];
}
inline const char* LayerPartName(LayerPart p) {
  return p == LayerPart::kAttention ? "attention" : "ffn";
}
inline std::optional<Site> ParseSite(absl::string_view name) {
  for (Site s : kAllSites) {
    if (name == SiteName(s)) return s;
  }
  return std::nullopt;
}

// (layer, site), e.g. "12.down" in plans and flags.
struct SiteKey {
  int layer = 0;
  Site site = Site::kQkv;
  bool operator<(const SiteKey& o) const {
    return layer != o.layer ? layer < o.layer : site < o.site;
  }
  bool operator==(const SiteKey& o) const {
    return layer == o.layer && site == o.site;
  }
};

inline std::string SiteKeyName(const SiteKey& k) {
  return std::to_string(k.layer) + "." + SiteName(k.site);
}

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_SITE_H_
