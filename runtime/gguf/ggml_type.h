// Tensor element types of the GGUF format (ggml's type ids) and their block
// geometry. Knowing the geometry of every type lets the reader bounds-check
// any file; which types can be dequantized is a separate question
// (dequantize.h).
#ifndef SPIKESERVE_RUNTIME_GGUF_GGML_TYPE_H_
#define SPIKESERVE_RUNTIME_GGUF_GGML_TYPE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace spikeserve {

// Values are ggml's `enum ggml_type`; they are what GGUF files store.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
};

// Storage geometry: `block_elems` consecutive elements along the innermost
// dimension are stored in `block_bytes` bytes.
struct GgmlTypeTraits {
  const char* name;
  uint32_t block_elems;
  uint32_t block_bytes;
};

// Returns nullptr for ids that are not a known ggml type.
const GgmlTypeTraits* GetGgmlTypeTraits(uint32_t type_id);

// Name for messages; "type#<id>" for unknown ids.
std::string GgmlTypeName(uint32_t type_id);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_GGUF_GGML_TYPE_H_
