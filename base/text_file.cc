#include "base/text_file.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace spikeserve {

absl::StatusOr<std::string> ReadTextFile(const std::string& path,
                                         size_t max_bytes) {
  // std::ifstream opens a directory and reads nothing: say what it is.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is a directory, not a file"));
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read '", path, "'"));
  std::string out;
  char buf[1 << 16];
  while (f) {
    f.read(buf, sizeof(buf));
    const size_t n = size_t(f.gcount());
    if (out.size() + n > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", path, "' is larger than ", max_bytes, " bytes"));
    }
    out.append(buf, n);
    // Said at once: a model file given for a plan or template is gigabytes.
    if (absl::StartsWith(out, "GGUF")) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", path, "' is a GGUF model file, not a text file"));
    }
  }
  if (f.bad()) {
    return absl::DataLossError(absl::StrCat("error reading '", path, "'"));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is empty"));
  }
  return out;
}

}  // namespace spikeserve
