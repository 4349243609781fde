#include "base/text_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
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

absl::Status WriteTextFileAtomically(const std::string& path,
                                     absl::string_view data) {
  struct stat st;
  const bool in_place = stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode);
  const std::string target =
      in_place ? path : absl::StrCat(path, ".tmp.", getpid());
  std::FILE* f = std::fopen(target.c_str(), "wb");
  if (f == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create '", target, "'"));
  }
  bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
  ok = std::fflush(f) == 0 && ok;
  if (!in_place) ok = fsync(fileno(f)) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (ok && !in_place) ok = std::rename(target.c_str(), path.c_str()) == 0;
  if (!ok) {
    if (!in_place) std::remove(target.c_str());
    return absl::DataLossError(absl::StrCat("cannot write '", path, "'"));
  }
  return absl::OkStatus();
}

}  // namespace spikeserve
