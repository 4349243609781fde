#include "base/text_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/status/status.h"
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
  // Through a symlink, the file it names is replaced, not the link.
  std::error_code ec;
  std::filesystem::path resolved = std::filesystem::weakly_canonical(path, ec);
  const std::string target_path = ec ? path : resolved.string();
  struct stat st;
  const bool exists = stat(target_path.c_str(), &st) == 0;
  const bool in_place = exists && !S_ISREG(st.st_mode);
  const mode_t mode = exists && !in_place ? (st.st_mode & 07777) : 0644;
  const std::string target =
      in_place ? target_path : absl::StrCat(target_path, ".tmp.", getpid());
  const int fd = in_place ? open(target.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC)
                          : open(target.c_str(),
                                 O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("cannot create '", target, "'"));
  }
  int error = 0;
  for (size_t done = 0; done < data.size() && error == 0;) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno != EINTR) error = errno;
    if (n > 0) done += size_t(n);
  }
  if (error == 0 && !in_place && fsync(fd) != 0) error = errno;
  if (close(fd) != 0 && error == 0) error = errno;
  if (error == 0 && !in_place &&
      std::rename(target.c_str(), target_path.c_str()) != 0) {
    error = errno;
  }
  if (error != 0) {
    if (!in_place) std::remove(target.c_str());
    return absl::ErrnoToStatus(error,
                               absl::StrCat("cannot write '", path, "'"));
  }
  return absl::OkStatus();
}

}  // namespace spikeserve
