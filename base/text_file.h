// Reading a whole (small) text file: a chat template, a quant plan, a
// calibration text, TLS files.
#ifndef SPIKESERVE_BASE_TEXT_FILE_H_
#define SPIKESERVE_BASE_TEXT_FILE_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace spikeserve {

// The whole file, of at most `max_bytes`: read in pieces up to the bound,
// so a model file given by mistake, or a device that never ends, is refused
// there instead of read whole. Errors name the path: NotFound (cannot
// open), InvalidArgument (a directory, empty, a GGUF model file, or larger
// than the bound), DataLoss (a read error).
absl::StatusOr<std::string> ReadTextFile(const std::string& path,
                                         size_t max_bytes = size_t{1} << 30);

// Writes `data` to `path` so that a reader sees the old file or the new one,
// never a part: to a temporary file beside it, flushed and synced, then
// renamed over it (an interrupted run or a full disk leaves the old plan in
// place), keeping the old file's mode; through a symlink, the file it names.
// A path that exists and is not a regular file (/dev/stdout, a pipe) is
// written in place, write errors checked. Errors name the path and carry
// errno's code (the folder must be writable for the temporary file).
absl::Status WriteTextFileAtomically(const std::string& path,
                                     absl::string_view data);

}  // namespace spikeserve

#endif  // SPIKESERVE_BASE_TEXT_FILE_H_
