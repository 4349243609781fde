// Soak: thousands of requests with random prompt lengths, random client
// cancellations and deadlines, unary and streaming, from many concurrent
// clients. Every request ends with the status its client chose, nothing is
// refused, and afterwards the KV pool is back to idle. Run under ASan/UBSan
// by `make test-asan` (the sanitizers report leaks and errors). Requests:
// SPIKESERVE_SOAK_REQUESTS (default 10000).
#include <atomic>
#include <cstdlib>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/server/server_fixture.h"

namespace spikeserve::testing {
namespace {

using ::grpc::StatusCode;

TEST_F(ServerTest, SoakWithCancellationsAndDeadlines) {
  const char* env = std::getenv("SPIKESERVE_SOAK_REQUESTS");
  const int total = env != nullptr ? std::atoi(env) : 10000;
  ServerOptions o = DefaultOptions();
  o.engine.max_running = 8;
  o.engine.max_waiting = 64;
  o.engine.kv_blocks = 256;
  StartServer(o);
  const EngineStats idle = IdleStats();

  std::atomic<int> next{0}, ok{0}, cancelled{0}, deadline{0}, wrong{0};
  auto client = [&](int seed) {
    std::mt19937 rng(seed);
    auto stub = v1::Generation::NewStub(channel_);
    for (int i = next++; i < total; i = next++) {
      std::vector<int32_t> prompt(1 + rng() % 200);
      for (auto& t : prompt) t = int32_t(32 + rng() % 200);
      const int n = 1 + int(rng() % 40);
      const int kind = int(rng() % 10);  // 0-1 cancel, 2 deadline, else run
      grpc::ClientContext ctx;
      if (kind == 2) {
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(1 + rng() % 20));
      }
      v1::GenerateRequest req = TokenRequest(prompt, n);
      if (kind <= 1 || rng() % 2 == 0) {
        auto reader = stub->GenerateStream(&ctx, req);
        v1::GenerateResponse m;
        int tokens = 0;
        while (reader->Read(&m)) {
          tokens += m.tokens_size();
          if (kind <= 1) ctx.TryCancel();  // after the first message
        }
        const grpc::Status s = reader->Finish();
        if (kind <= 1 && s.error_code() == StatusCode::CANCELLED) {
          ++cancelled;
        } else if (kind == 2 &&
                   s.error_code() == StatusCode::DEADLINE_EXCEEDED) {
          ++deadline;
        } else if (s.ok() && tokens == n) {
          ++ok;  // finished before the cancel or the deadline took effect
        } else {
          ++wrong;
          ADD_FAILURE() << "request " << i << " kind " << kind << ": "
                        << s.error_code() << " " << s.error_message()
                        << " tokens " << tokens << "/" << n;
        }
      } else {
        v1::GenerateResponse r;
        const grpc::Status s = stub->Generate(&ctx, req, &r);
        if (kind == 2 && s.error_code() == StatusCode::DEADLINE_EXCEEDED) {
          ++deadline;
        } else if (s.ok() && r.tokens_size() == n) {
          ++ok;
        } else {
          ++wrong;
          ADD_FAILURE() << "request " << i << ": " << s.error_code() << " "
                        << s.error_message();
        }
      }
    }
  };
  std::vector<std::thread> clients;
  for (int c = 0; c < 16; ++c) clients.emplace_back(client, 1000 + c);
  for (auto& t : clients) t.join();

  std::printf(
      "soak: %d requests: %d complete, %d cancelled, %d past their "
      "deadline, %d wrong\n",
      total, ok.load(), cancelled.load(), deadline.load(), wrong.load());
  EXPECT_EQ(ok + cancelled + deadline, total);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GE(cancelled.load(), total / 10);  // ~20% asked, most land
  const EngineStats after = IdleStats();
  EXPECT_EQ(after.running, 0);
  EXPECT_EQ(after.waiting, 0);
  // Only the prefix cache may hold more blocks than at the start.
  EXPECT_EQ(after.kv_blocks_used - after.kv_blocks_cached,
            idle.kv_blocks_used - idle.kv_blocks_cached);
  EXPECT_EQ(after.prefix_block_refs, idle.prefix_block_refs);
}

}  // namespace
}  // namespace spikeserve::testing
