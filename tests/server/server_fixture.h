// An in-process spikeserve on 127.0.0.1 (any free port) serving a tiny
// random-weight model that the fixture writes, plus a quant plan for it
// (W8A8 per-tensor dynamic with a 3-token QFeP prefix), and client stubs.
#ifndef SPIKESERVE_TESTS_SERVER_SERVER_FIXTURE_H_
#define SPIKESERVE_TESTS_SERVER_SERVER_FIXTURE_H_

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "runtime/linear/onednn_matmul.h"
#include "server/server.h"
#include "spikeserve/v1/generation.grpc.pb.h"

namespace spikeserve::testing {

// Pauses the engine thread inside Forward (after layer 0's attention) while
// held, so that tests hold requests in flight deterministically, however
// fast the tiny model runs. Thread-safe.
class EngineGate : public ForwardObserver {
 public:
  // Pause at every forward pass from now on.
  void Hold();
  // Run freely.
  void Open();
  // Let the paused forward pass go on; the engine pauses again at the next.
  void ReleaseOnce();
  // Blocks until the engine has paused `n` times in all (a test failure
  // after 60 s).
  void WaitPauses(int n);
  void OnLayerPart(int layer, LayerPart part, double seconds) override;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  int pauses_ = 0, releases_ = 0;
};

// Files written once per test binary.
struct TinyModelFiles {
  std::string model;  // GGUF
  std::string plan;   // JSON quant plan with a QFeP prefix
  std::vector<int32_t> prefix;
  int context = 0;
};
const TinyModelFiles& GetTinyModelFiles();

// Writes `gguf` to <tmp>/<name>.gguf and a W8A8 per-tensor-dynamic plan for
// it with QFeP `prefix` (may be empty) to <tmp>/<name>-plan.json.
TinyModelFiles WriteModelAndPlan(const std::string& gguf,
                                 const std::string& name,
                                 std::vector<int32_t> prefix);

// The INT8 kernel the server must report on this CPU: ours for every
// batch, VNNI with AMX tiles for many rows where oneDNN has AMX, VNNI, or
// AVX2 (never oneDNN's, never a reference kernel).
inline const char* ExpectedInt8Kernel() {
  if (Int8MatmulHasAmx()) return "own:avx512_vnni+amx";
  return Int8MatmulHasVnni() ? "own:avx512_vnni" : "own:avx2";
}

// A TCP connection to 127.0.0.1:<port> (a blocking socket), or -1.
int ConnectLocal(int port);

// GET http://127.0.0.1:<port><path>; the body, or "" on failure.
std::string HttpGet(int port, const std::string& path);

// One HTTP/1.0 exchange with 127.0.0.1:<port> (the answer ends at EOF, so
// a stream comes without chunked encoding). status 0: no answer.
struct HttpReply {
  int status = 0;
  std::string headers;  // the status line and headers
  std::string body;
};
HttpReply HttpRequest(int port, const std::string& method,
                      const std::string& path, const std::string& body = "",
                      const std::string& extra_headers = "");
// The "data: ..." payloads of a server-sent-events body, in order.
std::vector<std::string> SseData(const std::string& body);

class ServerTest : public ::testing::Test {
 protected:
  // Options for a server on the tiny model and plan; tests adjust them
  // before StartServer().
  ServerOptions DefaultOptions() const;
  // Starts (and by default loads) a server; fails the test on error.
  void StartServer(const ServerOptions& options, bool load = true);
  void TearDown() override;

  // Greedy, EOS ignored, given token ids.
  static v1::GenerateRequest TokenRequest(std::vector<int32_t> ids,
                                          int max_new_tokens);
  // A unary Generate with an optional deadline from now.
  grpc::Status Generate(const v1::GenerateRequest& request,
                        v1::GenerateResponse* response, int deadline_ms = 0);
  // Reads a whole stream; returns its status.
  grpc::Status Stream(const v1::GenerateRequest& request,
                      std::vector<v1::GenerateResponse>* messages);
  // Health of `service` ("" = the server as a whole).
  grpc::health::v1::HealthCheckResponse::ServingStatus Health(
      const std::string& service);
  // Waits (bounded) until the engine counts `n` queued requests.
  void WaitForWaiting(int n);
  // Engine statistics once every generation call has ended server-side.
  EngineStats IdleStats();
  // Blocks until the engine holds `n` aborts it has not processed yet.
  void WaitForAborts(int n);

  EngineGate gate_;  // installed as the engine's observer
  std::unique_ptr<SpikeServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace spikeserve::testing

#endif  // SPIKESERVE_TESTS_SERVER_SERVER_FIXTURE_H_
