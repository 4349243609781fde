// Listening TCP sockets for the HTTP ports (/metrics, the OpenAI API).
#ifndef SPIKESERVE_SERVER_HTTP_LISTEN_H_
#define SPIKESERVE_SERVER_HTTP_LISTEN_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace spikeserve {

// "HOST:PORT" or "[HOST]:PORT" (port 0 = any free port) -> a listening TCP
// socket (nonblocking, close-on-exec), or why not: Unavailable naming
// `what` ("metrics"), the address and the cause (port taken).
absl::StatusOr<int> ListenTcp(const std::string& bind, absl::string_view what);

// The port `fd` is bound to (0 if unknown).
int BoundTcpPort(int fd);

}  // namespace spikeserve

#endif  // SPIKESERVE_SERVER_HTTP_LISTEN_H_
