// Reading a whole (small) text file: a chat template, a calibration text.
#ifndef SPIKESERVE_BASE_TEXT_FILE_H_
#define SPIKESERVE_BASE_TEXT_FILE_H_

#include <string>

#include "absl/status/statusor.h"

namespace spikeserve {

// The whole file; NotFound / InvalidArgument (empty) naming the path.
absl::StatusOr<std::string> ReadTextFile(const std::string& path);

}  // namespace spikeserve

#endif  // SPIKESERVE_BASE_TEXT_FILE_H_
