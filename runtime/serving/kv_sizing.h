// Sizing the KV pool in bytes: what an operator knows (the memory a replica
// may use), not blocks of a model-specific size.
#ifndef SPIKESERVE_RUNTIME_SERVING_KV_SIZING_H_
#define SPIKESERVE_RUNTIME_SERVING_KV_SIZING_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace spikeserve {

// Bytes of K and V one token takes in every layer (FP32, or BF16 cache).
int64_t KvBytesPerToken(int n_layers, int kv_dim, bool bf16 = false);

// The bytes `spec` names (the forms below); InvalidArgument naming it.
// Checkable before the model loads.
absl::StatusOr<int64_t> ParseKvCacheBytes(absl::string_view spec,
                                          int64_t available_bytes);

// Blocks of `block_tokens` tokens that fit in `spec`: a byte count with an
// optional K, M, G or T suffix (powers of 1024: "2G", "512M", "1073741824")
// or a percentage of `available_bytes` ("30%": of the memory available
// after the model is loaded). InvalidArgument, naming the spec, when it is
// malformed, or when not even one block fits.
absl::StatusOr<int> KvBlocksForBytes(absl::string_view spec,
                                     int64_t per_token_bytes, int block_tokens,
                                     int64_t available_bytes);

// MemAvailable of /proc/meminfo in bytes, or the cgroup's limit minus its
// usage when that is smaller (a container's share); -1 when unknown.
int64_t AvailableMemoryBytes();

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_SERVING_KV_SIZING_H_
