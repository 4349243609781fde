#include "server/auth.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace spikeserve {
namespace {

// Equal in time independent of where the strings differ.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  unsigned diff = a.size() ^ b.size();
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= uint8_t(a[i]) ^ uint8_t(i < b.size() ? b[i] : 0);
  }
  return diff == 0;
}

}  // namespace

grpc::Status TokenAuth::Check(const grpc::ServerContextBase& context) const {
  if (token_.empty()) return grpc::Status::OK;
  const auto& md = context.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing bearer token (metadata \"authorization: "
                        "Bearer <token>\")");
  }
  const absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(value, kBearer) ||
      !ConstantTimeEquals(value.substr(kBearer.size()), token_)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid token");
  }
  return grpc::Status::OK;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) {
    return absl::NotFoundError(
        absl::StrCat("cannot read the auth token file ", path));
  }
  std::stringstream ss;
  ss << f.rdbuf();
  std::string token(absl::StripAsciiWhitespace(ss.str()));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the auth token file ", path, " is empty"));
  }
  return token;
}

absl::StatusOr<std::string> ResolveAuthToken(const std::string& file,
                                             const char* env) {
  if (!file.empty()) return ReadTokenFile(file);
  if (env == nullptr) return std::string();
  std::string token(absl::StripAsciiWhitespace(env));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        "SPIKESERVE_AUTH_TOKEN is set but empty (or only whitespace): set a "
        "token, or unset the variable to serve without authentication");
  }
  return token;
}

}  // namespace spikeserve
