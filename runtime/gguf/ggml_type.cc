#include "runtime/gguf/ggml_type.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace spikeserve {
namespace {

// Indexed by type id; {nullptr, 0, 0} marks ids ggml retired (4, 5, 31+).
// Sizes follow ggml's block structs (QK_K = 256 super-blocks for K-quants).
constexpr GgmlTypeTraits kTraits[] = {
    {"F32", 1, 4},         // 0
    {"F16", 1, 2},         // 1
    {"Q4_0", 32, 18},      // 2: f16 d, 16 bytes of nibbles
    {"Q4_1", 32, 20},      // 3: f16 d, f16 m, 16 bytes of nibbles
    {nullptr, 0, 0},       // 4: removed Q4_2
    {nullptr, 0, 0},       // 5: removed Q4_3
    {"Q5_0", 32, 22},      // 6
    {"Q5_1", 32, 24},      // 7
    {"Q8_0", 32, 34},      // 8: f16 d, 32 int8
    {"Q8_1", 32, 36},      // 9
    {"Q2_K", 256, 84},     // 10
    {"Q3_K", 256, 110},    // 11
    {"Q4_K", 256, 144},    // 12
    {"Q5_K", 256, 176},    // 13
    {"Q6_K", 256, 210},    // 14
    {"Q8_K", 256, 292},    // 15
    {"IQ2_XXS", 256, 66},  // 16
    {"IQ2_XS", 256, 74},   // 17
    {"IQ3_XXS", 256, 98},  // 18
    {"IQ1_S", 256, 50},    // 19
    {"IQ4_NL", 32, 18},    // 20
    {"IQ3_S", 256, 110},   // 21
    {"IQ2_S", 256, 82},    // 22
    {"IQ4_XS", 256, 136},  // 23
    {"I8", 1, 1},          // 24
    {"I16", 1, 2},         // 25
    {"I32", 1, 4},         // 26
    {"I64", 1, 8},         // 27
    {"F64", 1, 8},         // 28
    {"IQ1_M", 256, 56},    // 29
    {"BF16", 1, 2},        // 30
};

}  // namespace

const GgmlTypeTraits* GetGgmlTypeTraits(uint32_t type_id) {
  if (type_id >= sizeof(kTraits) / sizeof(kTraits[0])) return nullptr;
  const GgmlTypeTraits* t = &kTraits[type_id];
  return t->name == nullptr ? nullptr : t;
}

std::string GgmlTypeName(uint32_t type_id) {
  const GgmlTypeTraits* t = GetGgmlTypeTraits(type_id);
  return t ? std::string(t->name) : absl::StrCat("type#", type_id);
}

}  // namespace spikeserve
