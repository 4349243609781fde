#include "server/http/listen.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace spikeserve {

absl::StatusOr<int> ListenTcp(const std::string& bind, absl::string_view what) {
  const size_t colon = bind.rfind(':');
  if (colon == std::string::npos || colon + 1 == bind.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " address '", bind, "' is not HOST:PORT"));
  }
  std::string host = bind.substr(0, colon);
  const std::string port = bind.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(),
                                 port.c_str(), &hints, &found);
      rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve ", what, " on ",
                                               bind, ": ", gai_strerror(rc)));
  }
  const int fd = socket(found->ai_family,
                        found->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int err = fd < 0 ? errno : 0;
  if (fd >= 0) {
    const int one = 1;
    // SO_REUSEADDR lets a restart bind over TIME_WAIT sockets; it does not
    // let two servers share the port (that is SO_REUSEPORT, not set).
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0 ||
        listen(fd, SOMAXCONN) != 0) {
      err = errno;
      close(fd);
    }
  }
  freeaddrinfo(found);
  if (err != 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot serve ", what, " on ", bind, ": ", std::strerror(err),
        err == EADDRINUSE ? " (port taken)" : ""));
  }
  return fd;
}

int BoundTcpPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
}

}  // namespace spikeserve
