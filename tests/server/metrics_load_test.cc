// Issue 20: /metrics keeps answering while many connections to its port are
// idle or slow (a port scanner, a stuck sidecar, a slowloris client), gRPC
// keeps serving meanwhile, and the server's threads and memory come back
// once those connections are gone.
//
// Its own binary: the thread count and RSS it compares are the process's,
// and a fresh process has no other test's leftovers in them.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/server_fixture.h"

namespace spikeserve::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kIdleConnections = 500;
constexpr int kSlowConnections = 50;
constexpr int kScrapes = 20;
// A scrape that answers within this is answering; one that does not hangs.
constexpr auto kScrapeDeadline = std::chrono::seconds(1);

// Enough descriptors for both ends of every connection in this process.
void RaiseDescriptorLimit() {
  rlimit lim{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &lim), 0);
  const rlim_t want = 4 * (kIdleConnections + kSlowConnections) + 256;
  if (lim.rlim_cur < want) {
    lim.rlim_cur = std::min(want, lim.rlim_max);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
  }
  ASSERT_GE(lim.rlim_cur, want) << "raise the hard limit of open files";
}

struct ScrapeResult {
  std::string response;  // status line, headers and body as received
  Clock::duration took{};
};

// GET /metrics on a new connection; reads until the server closes it or
// `deadline` has passed since the start (then `took` exceeds it).
ScrapeResult TimedScrape(int port, Clock::duration deadline) {
  ScrapeResult r;
  const Clock::time_point start = Clock::now();
  const Clock::time_point until = start + deadline;
  const int fd = ConnectLocal(port);
  if (fd < 0) return r;
  const std::string req =
      "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == ssize_t(req.size())) {
    char buf[65536];
    for (Clock::time_point now = Clock::now(); now < until;
         now = Clock::now()) {
      pollfd p{fd, POLLIN, 0};
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - now);
      if (poll(&p, 1, int(left.count()) + 1) <= 0) continue;
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;  // closed: the whole answer is in
      r.response.append(buf, size_t(n));
    }
  }
  r.took = Clock::now() - start;
  close(fd);
  return r;
}

// This process's threads and resident memory (KiB).
int ThreadCount() {
  int n = 0;
  for ([[maybe_unused]] const auto& e :
       std::filesystem::directory_iterator("/proc/self/task")) {
    ++n;
  }
  return n;
}

long RssKib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// True while the server has not closed `fd` (no EOF or error pending).
bool StillOpen(int fd) {
  char c;
  const ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// Writes one byte of a request header per second to each socket, never
// finishing the header, until stopped. `rounds()` counts the bytes sent to
// each socket so far.
class SlowHeaderWriter {
 public:
  explicit SlowHeaderWriter(std::vector<int> fds)
      : fds_(std::move(fds)), thread_([this] { Run(); }) {}
  ~SlowHeaderWriter() { Stop(); }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  // Blocks until every socket got `n` bytes (bounded: n + 5 seconds).
  bool WaitRounds(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(n + 5),
                        [&] { return rounds_ >= n; });
  }

 private:
  void Run() {
    // 31 bytes: more than any test runs seconds, so never a whole header.
    const std::string header = "GET /metrics HTTP/1.1\r\nHost: 12";
    std::unique_lock<std::mutex> lock(mu_);
    for (size_t i = 0; i < header.size() && !stop_; ++i) {
      lock.unlock();
      for (const int fd : fds_) send(fd, &header[i], 1, MSG_NOSIGNAL);
      lock.lock();
      ++rounds_;
      cv_.notify_all();
      // The one-byte-a-second pace (not a synchronization).
      cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; });
    }
  }

  std::vector<int> fds_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int rounds_ = 0;
  std::thread thread_;  // last: starts after the fields above exist
};

class MetricsLoadTest : public ServerTest {};

TEST_F(MetricsLoadTest, ScrapesAnswerWhileManyConnectionsAreIdleOrSlow) {
  RaiseDescriptorLimit();
  ServerOptions o = DefaultOptions();
  o.metrics_bind = "127.0.0.1:0";
  // Longer than the test (also under sanitizers): the connections stay
  // held by the server while it is scraped.
  o.http_limits.idle_timeout = absl::Seconds(60);
  StartServer(o);
  const int port = server_->metrics()->port();
  ASSERT_GT(port, 0);
  MetricsHttpServer* http = server_->metrics()->http();
  ASSERT_NE(http, nullptr);

  // Warm up both endpoints, so that what they allocate once is in the
  // baseline; then the baseline.
  v1::GenerateResponse g;
  ASSERT_TRUE(Generate(TokenRequest({65, 66}, 2), &g).ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT(TimedScrape(port, kScrapeDeadline).response,
                ::testing::StartsWith("HTTP/1.1 200"));
  }
  const int threads_before = ThreadCount();
  const long rss_before = RssKib();

  std::vector<int> idle, slow;
  for (int i = 0; i < kIdleConnections; ++i) {
    idle.push_back(ConnectLocal(port));
    ASSERT_GE(idle.back(), 0) << "connection " << i;
  }
  for (int i = 0; i < kSlowConnections; ++i) {
    slow.push_back(ConnectLocal(port));
    ASSERT_GE(slow.back(), 0) << "slow connection " << i;
  }
  SlowHeaderWriter writer(slow);
  // The slow ones are mid-header (3 bytes in) before the scrapes start.
  ASSERT_TRUE(writer.WaitRounds(3));

  std::vector<double> ms;
  for (int i = 0; i < kScrapes; ++i) {
    const ScrapeResult r = TimedScrape(port, kScrapeDeadline);
    ms.push_back(std::chrono::duration<double, std::milli>(r.took).count());
    EXPECT_THAT(r.response, ::testing::StartsWith("HTTP/1.1 200"))
        << "scrape " << i << " after " << ms.back() << " ms";
    EXPECT_THAT(r.response, ::testing::HasSubstr("spikeserve_build_info"));
    EXPECT_LT(r.took, kScrapeDeadline) << "scrape " << i;
    // gRPC keeps answering too.
    ASSERT_TRUE(Generate(TokenRequest({65, 66, 67}, 2), &g,
                         /*deadline_ms=*/5000)
                    .ok())
        << "Generate " << i;
  }
  // The scrapes answered with the idle and slow connections still held
  // (the server did not simply drop them all before).
  EXPECT_EQ(std::count_if(idle.begin(), idle.end(), StillOpen),
            kIdleConnections);
  EXPECT_EQ(std::count_if(slow.begin(), slow.end(), StillOpen),
            kSlowConnections);
  const int threads_loaded = ThreadCount();
  const long rss_loaded = RssKib();

  writer.Stop();
  for (const int fd : idle) close(fd);
  for (const int fd : slow) close(fd);
  // The server closes its ends (bounded wait on its own count).
  const Clock::time_point until = Clock::now() + std::chrono::seconds(10);
  while (http->open_connections() > 0 && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // poll
  }
  EXPECT_EQ(http->open_connections(), 0);
  const int threads_after = ThreadCount();
  const long rss_after = RssKib();

  std::sort(ms.begin(), ms.end());
  std::printf(
      "scrapes under load: median %.2f ms, max %.2f ms; threads %d -> %d "
      "(loaded) -> %d; RSS %ld -> %ld (loaded) -> %ld KiB\n",
      ms[ms.size() / 2], ms.back(), threads_before, threads_loaded,
      threads_after, rss_before, rss_loaded, rss_after);
  // No thread per connection (550 are held): a handful more at most, which
  // gRPC's own executor may add when the Generate calls wait on a loaded
  // machine (seen: 13 -> 16 beside a parallel ctest), before and after
  // the connections are closed.
  constexpr int kExecutorSlack = 6;
  EXPECT_LE(threads_loaded, threads_before + kExecutorSlack)
      << threads_before << " -> " << threads_loaded;
  EXPECT_LE(std::abs(threads_after - threads_before),
            std::max(threads_before / 10, kExecutorSlack))
      << threads_before << " -> " << threads_after;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Sanitizer allocators hold freed memory in quarantine: RSS does not come
  // back there by design, so the memory bound is checked in normal builds.
  std::printf("RSS bound not checked under a sanitizer\n");
#else
  EXPECT_LE(std::abs(rss_after - rss_before), rss_before / 10)
      << rss_before << " -> " << rss_after << " KiB";
#endif
}

// --http_idle_timeout: a connection that sends nothing, and one that stops
// in the middle of its request headers, are closed by the server.
TEST_F(MetricsLoadTest, IdleAndStalledConnectionsAreClosedAfterTheTimeout) {
  ServerOptions o = DefaultOptions();
  o.metrics_bind = "127.0.0.1:0";
  o.http_limits.idle_timeout = absl::Seconds(1);
  StartServer(o, /*load=*/false);
  const int port = server_->metrics()->port();
  const int idle = ConnectLocal(port);
  const int stalled = ConnectLocal(port);
  ASSERT_GE(idle, 0);
  ASSERT_GE(stalled, 0);
  const std::string part = "GET /metrics HTTP/1.1\r\nHo";
  ASSERT_EQ(send(stalled, part.data(), part.size(), MSG_NOSIGNAL),
            ssize_t(part.size()));
  for (const int fd : {idle, stalled}) {
    // EOF (or a reset) within the timeout plus libmicrohttpd's one-second
    // granularity and some slack; 10 s tells "closed" from "kept".
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 10000), 1) << "still open after 10 s";
    char buf[256];
    EXPECT_LE(recv(fd, buf, sizeof(buf), 0), 0);
    close(fd);
  }
}

}  // namespace
}  // namespace spikeserve::testing
