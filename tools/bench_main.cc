// spikeserve-bench: a gRPC load generator for a running spikeserve.
//
//   spikeserve-bench --target HOST:PORT --concurrency N --requests N
//       --prompt_tokens N --max_new_tokens N --json [--server_pid PID]
//
// Each of `concurrency` clients sends GenerateStream requests back to back
// until `requests` have been sent. Prompts are token ids drawn at random
// (distinct per request, so the prefix cache does not help unless
// --shared_prefix_tokens says so); EOS is ignored so that every request
// generates exactly max_new_tokens. Prints one JSON object: TTFT and
// inter-token latency percentiles, requests/s, output tokens/s, errors by
// status code, and with --server_pid the server's RSS before and under load.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/flag_util.h"
#include "grpcpp/grpcpp.h"
#include "server/grpc/grpc_status.h"
#include "spikeserve/v1/generation.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "Server address.");
ABSL_FLAG(int, concurrency, 1, "Clients sending requests at once.");
ABSL_FLAG(int, requests, 8, "Requests in all.");
ABSL_FLAG(int, prompt_tokens, 128, "Prompt length in tokens.");
ABSL_FLAG(int, max_new_tokens, 64, "Tokens generated per request.");
ABSL_FLAG(int, shared_prefix_tokens, 0,
          "Leading prompt tokens shared by every request (prefix cache).");
ABSL_FLAG(int, warmup_requests, 1,
          "Requests sent (and not measured) before the run.");
ABSL_FLAG(bool, json, false, "Print one JSON object (else a summary).");
ABSL_FLAG(int, server_pid, 0,
          "Local server's pid: report its RSS at idle and at peak load.");
ABSL_FLAG(uint64_t, seed, 1, "Prompt randomness.");
ABSL_FLAG(double, timeout, 600,
          "Seconds a request may take before it counts as a "
          "DEADLINE_EXCEEDED error (the call's gRPC deadline).");

namespace spikeserve {
namespace {

using Clock = std::chrono::steady_clock;

double Secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Resident set size of `pid` in MiB (0 when unreadable).
double RssMib(int pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::atof(line.c_str() + 6) / 1024.0;  // kB
    }
  }
  return 0;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p * double(v.size() - 1);
  const size_t lo = size_t(idx), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - double(lo));
}

struct Results {
  std::mutex mu;
  std::vector<double> ttft, itl, latency;
  int64_t output_tokens = 0;
  int ok = 0;
  std::map<std::string, int> errors;  // by status code name
};

v1::GenerateRequest MakeRequest(int index, int vocab) {
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed) * 1000003 + uint64_t(index));
  std::mt19937_64 shared_rng(absl::GetFlag(FLAGS_seed));
  v1::GenerateRequest r;
  auto* ids = r.mutable_tokens()->mutable_ids();
  const int n = absl::GetFlag(FLAGS_prompt_tokens);
  const int shared = std::min(n, absl::GetFlag(FLAGS_shared_prefix_tokens));
  // Ordinary tokens only: skip the first 1000 ids (bytes, control tokens).
  const int lo = std::min(1000, vocab / 2);
  for (int i = 0; i < n; ++i) {
    auto& g = i < shared ? shared_rng : rng;
    ids->Add(int32_t(lo + g() % uint64_t(vocab - lo)));
  }
  r.mutable_stopping()->set_max_new_tokens(
      uint32_t(absl::GetFlag(FLAGS_max_new_tokens)));
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

// One streamed request; records its latencies.
void RunOne(v1::Generation::Stub* stub, const v1::GenerateRequest& req,
            Results* out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::microseconds(int64_t(absl::GetFlag(FLAGS_timeout) * 1e6)));
  const Clock::time_point t0 = Clock::now();
  auto reader = stub->GenerateStream(&ctx, req);
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  v1::GenerateResponse m;
  Clock::time_point last = t0;
  double ttft = -1;
  std::vector<double> itl;
  int64_t tokens = 0;
  while (reader->Read(&m)) {
    if (m.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      finish = m.finish_reason();
    }
    if (m.tokens_size() == 0) continue;
    const Clock::time_point now = Clock::now();
    if (ttft < 0) {
      ttft = Secs(t0, now);
      // Tokens after the first in the same message arrived together.
      for (int i = 1; i < m.tokens_size(); ++i) itl.push_back(0);
    } else {
      // A message may carry several tokens: spread the gap over them.
      const double gap = Secs(last, now) / m.tokens_size();
      for (int i = 0; i < m.tokens_size(); ++i) itl.push_back(gap);
    }
    tokens += m.tokens_size();
    last = now;
  }
  const grpc::Status s = reader->Finish();
  std::lock_guard<std::mutex> lock(out->mu);
  if (!s.ok()) {
    out->errors[StatusCodeName(s.error_code())]++;
    return;
  }
  // An OK stream that ended early (EOS is ignored, so only an Abort, the
  // server's drain or the call's deadline end it before max_new_tokens)
  // is no success: counted under its finish reason.
  if (finish != v1::FINISH_REASON_LENGTH) {
    out->errors[finish == v1::FINISH_REASON_UNSPECIFIED
                    ? std::string("NO_FINISH_REASON")
                    : v1::FinishReason_Name(finish)]++;
    return;
  }
  out->ok++;
  out->output_tokens += tokens;
  if (ttft >= 0) out->ttft.push_back(ttft);
  out->itl.insert(out->itl.end(), itl.begin(), itl.end());
  out->latency.push_back(Secs(t0, Clock::now()));
}

std::string Dist(const std::vector<double>& v) {
  return absl::StrFormat(
      "{\"p50\": %.6f, \"p90\": %.6f, \"p99\": %.6f, \"mean\": %.6f}",
      Percentile(v, 0.5), Percentile(v, 0.9), Percentile(v, 0.99),
      v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / v.size());
}

int Main() {
  const int concurrency = absl::GetFlag(FLAGS_concurrency);
  const int requests = absl::GetFlag(FLAGS_requests);
  if (const double t = absl::GetFlag(FLAGS_timeout); !(t > 0 && t <= 1e6)) {
    std::fprintf(stderr,
                 "spikeserve-bench: --timeout must be in (0, 1e6] seconds\n");
    return 2;
  }
  if (concurrency < 1 || requests < 1 ||
      absl::GetFlag(FLAGS_prompt_tokens) < 1 ||
      absl::GetFlag(FLAGS_max_new_tokens) < 1) {
    std::fprintf(stderr,
                 "spikeserve-bench: --concurrency, --requests, "
                 "--prompt_tokens and --max_new_tokens must be >= 1\n");
    return 2;
  }
  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_target),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Generation::NewStub(channel);
  v1::ModelInfo info;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    ctx.set_wait_for_ready(true);
    std::fprintf(stderr, "spikeserve-bench: waiting up to 30 s for %s\n",
                 absl::GetFlag(FLAGS_target).c_str());
    const grpc::Status s = stub->GetModelInfo(&ctx, {}, &info);
    if (!s.ok()) {
      std::fprintf(stderr, "spikeserve-bench: GetModelInfo on %s: %s\n",
                   absl::GetFlag(FLAGS_target).c_str(),
                   s.error_message().c_str());
      return 1;
    }
  }
  for (int i = 0; i < absl::GetFlag(FLAGS_warmup_requests); ++i) {
    Results ignored;
    RunOne(stub.get(), MakeRequest(-1 - i, info.vocab_size()), &ignored);
  }

  const int pid = absl::GetFlag(FLAGS_server_pid);
  const double rss_idle = pid > 0 ? RssMib(pid) : 0;
  std::atomic<bool> running{true};
  std::atomic<double> rss_peak{rss_idle};
  std::thread sampler;
  if (pid > 0) {
    sampler = std::thread([&] {
      while (running.load()) {
        rss_peak = std::max(rss_peak.load(), RssMib(pid));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }

  Results results;
  std::atomic<int> next{0};
  const Clock::time_point t0 = Clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&] {
      for (int i = next++; i < requests; i = next++) {
        RunOne(stub.get(), MakeRequest(i, info.vocab_size()), &results);
      }
    });
  }
  for (auto& t : clients) t.join();
  const double wall = Secs(t0, Clock::now());
  running = false;
  if (sampler.joinable()) sampler.join();

  std::string errors = "{";
  for (const auto& [code, n] : results.errors) {
    absl::StrAppend(&errors, errors.size() > 1 ? ", " : "", "\"", code,
                    "\": ", n);
  }
  errors += "}";
  const std::string json = absl::StrFormat(
      "{\"target\": \"%s\", \"model\": \"%s\", \"quant\": \"%s\", "
      "\"concurrency\": %d, \"requests\": %d, \"prompt_tokens\": %d, "
      "\"max_new_tokens\": %d, \"shared_prefix_tokens\": %d, "
      "\"ok\": %d, \"errors\": %s, \"duration_s\": %.3f, "
      "\"requests_per_s\": %.3f, \"output_tokens_per_s\": %.2f, "
      "\"ttft_s\": %s, \"itl_s\": %s, \"latency_s\": %s, "
      "\"server_rss_mib\": {\"idle\": %.1f, \"peak\": %.1f}}",
      absl::GetFlag(FLAGS_target), info.name(), info.quant().activation_mode(),
      concurrency, requests, absl::GetFlag(FLAGS_prompt_tokens),
      absl::GetFlag(FLAGS_max_new_tokens),
      absl::GetFlag(FLAGS_shared_prefix_tokens), results.ok, errors, wall,
      results.ok / wall, results.output_tokens / wall, Dist(results.ttft),
      Dist(results.itl), Dist(results.latency), rss_idle, rss_peak.load());
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", json.c_str());
  } else {
    std::printf(
        "%d/%d ok in %.2f s: %.2f req/s, %.1f output tok/s; TTFT p50 %.1f ms "
        "p99 %.1f ms; ITL p50 %.1f ms p99 %.1f ms; errors %s\n",
        results.ok, requests, wall, results.ok / wall,
        results.output_tokens / wall, 1e3 * Percentile(results.ttft, 0.5),
        1e3 * Percentile(results.ttft, 0.99),
        1e3 * Percentile(results.itl, 0.5), 1e3 * Percentile(results.itl, 0.99),
        errors.c_str());
  }
  return results.errors.empty() ? 0 : 3;
}

}  // namespace
}  // namespace spikeserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Load generator for spikeserve: streams --requests requests from "
      "--concurrency clients and prints latency and throughput.");
  spikeserve::ShowOwnFlagsInHelp();
  spikeserve::AcceptDashedFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return spikeserve::Main();
}
