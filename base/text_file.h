// Reading a whole (small) text file: a chat template, a quant plan, a
// calibration text, TLS files.
#ifndef SPIKESERVE_BASE_TEXT_FILE_H_
#define SPIKESERVE_BASE_TEXT_FILE_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace spikeserve {

// The whole file, of at most `max_bytes`: read in pieces up to the bound,
// so a model file given by mistake, or a device that never ends, is refused
// there instead of read whole. Errors name the path: NotFound (cannot
// open), InvalidArgument (a directory, empty, a GGUF model file, or larger
// than the bound), DataLoss (a read error).
absl::StatusOr<std::string> ReadTextFile(const std::string& path,
                                         size_t max_bytes = size_t{1} << 30);

}  // namespace spikeserve

#endif  // SPIKESERVE_BASE_TEXT_FILE_H_
