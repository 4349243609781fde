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
  const std::string value =
      it == md.end() ? "" : std::string(it->second.data(), it->second.size());
  const absl::Status s = CheckHeader(it == md.end() ? nullptr : value.c_str());
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      std::string(s.message()));
}

absl::Status TokenAuth::CheckHeader(const char* authorization) const {
  if (token_.empty()) return absl::OkStatus();
  if (authorization == nullptr) {
    return absl::UnauthenticatedError(
        "missing bearer token (\"authorization: Bearer <token>\")");
  }
  const absl::string_view value(authorization);
  // The scheme is case-insensitive (RFC 9110 11.1): "bearer" from some
  // clients and proxies is the same scheme.
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWithIgnoreCase(value, kBearer) ||
      !ConstantTimeEquals(value.substr(kBearer.size()), token_)) {
    return absl::UnauthenticatedError("invalid token");
  }
  return absl::OkStatus();
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
