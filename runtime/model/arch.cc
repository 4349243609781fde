#include "runtime/model/arch.h"

#include "absl/strings/str_join.h"

namespace spikeserve {
namespace {

// LLaMA 1/2/3.x, Mistral 7B, SmolLM2 and TinyLlama are all "llama" in GGUF.
constexpr ArchInfo kArchs[] = {
    {"llama", /*qkv_bias=*/false, /*rope_neox=*/false},
    {"qwen2", /*qkv_bias=*/true, /*rope_neox=*/true},
};

}  // namespace

const ArchInfo* FindArch(absl::string_view name) {
  for (const ArchInfo& a : kArchs) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

std::string SupportedArchNames() {
  return absl::StrJoin(kArchs, ", ", [](std::string* out, const ArchInfo& a) {
    out->append(a.name);
  });
}

}  // namespace spikeserve
