// spikeserve: the gRPC server.
//
//   spikeserve --model PATH [--plan PLAN.json] [--grpc_port 50051] ...
//
// Every flag can also be set as an environment variable SPIKESERVE_<FLAG>
// (e.g. SPIKESERVE_GRPC_PORT=50051); a flag on the command line wins.
// SIGTERM or SIGINT drain the server (see --drain_timeout) and exit 0;
// while the model is still loading they stop it at once (exit 0).
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/env_flags.h"
#include "base/flag_util.h"
#include "base/log.h"
#include "runtime/serving/kv_sizing.h"
#include "server/auth.h"
#include "server/server.h"

ABSL_FLAG(std::string, model, "", "Path of the GGUF model file (required).");
ABSL_FLAG(std::string, plan, "",
          "Quant plan JSON from spikeserve-calibrate (W8A8 with QFeM/QFeP, "
          "the most accurate); empty = --quant.");
ABSL_FLAG(std::string, quant, "",
          "Without --plan: w8a8 (INT8 weights and activations, per-token "
          "dynamic scales, no calibration needed; the default), w4a8 "
          "(4-bit weights in groups of 128, 64 or 32, the largest that "
          "divides each input; INT8 activations as w8a8) or fp32. "
          "Not with --plan, which carries its own quantization.");
ABSL_FLAG(std::string, w4_group, "auto",
          "With --quant w4a8: the 4-bit weights' group size along the input: "
          "auto (the largest of 128, 64, 32 that divides each module's "
          "input: fewest bytes, fastest decode), stored (a Q4_0, Q4_1 or "
          "Q4_K file's own groups, read as stored: the file's accuracy; "
          "other modules as auto), or 32, 64, 128.");
ABSL_FLAG(std::string, chat_template, "",
          "Jinja chat template file to render chat requests with, instead of "
          "the model's own (the GGUF's tokenizer.chat_template); needed for "
          "chat when the file has none. A template that does not parse "
          "fails the start with its line and column.");
ABSL_FLAG(std::string, lm_head, "auto",
          "Precision of the output projection (vocab x hidden, the largest "
          "weight a decode step reads): fp32, bf16 (half the bytes) or int8 "
          "(W8A8, per-token scales: a quarter); auto = int8. Accuracy of "
          "each in docs/accuracy.md.");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, grpc_port, 50051, "gRPC port (0 = any free port).");
ABSL_FLAG(std::string, tls_cert, "",
          "Server certificate chain (PEM): serve gRPC over TLS.");
ABSL_FLAG(std::string, tls_key, "", "Private key of --tls_cert (PEM).");
ABSL_FLAG(std::string, tls_client_ca, "",
          "CA certificate (PEM): require client certificates it signed "
          "(mutual TLS).");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding the bearer token every RPC but health must carry "
          "(\"authorization: Bearer <token>\"); or set the token itself in "
          "SPIKESERVE_AUTH_TOKEN. Surrounding whitespace is trimmed; an "
          "empty or blank token fails the start. Never logged.");
ABSL_FLAG(std::string, metrics_host, "",
          "Address of the /metrics endpoint (default: --host), e.g. a "
          "private interface while gRPC is public.");
ABSL_FLAG(int, metrics_port, 9464,
          "Prometheus /metrics port on --metrics_host (default --host; -1 "
          "= no metrics endpoint).");
ABSL_FLAG(int, http_port, 8080,
          "Port of the OpenAI-compatible HTTP API on --host (/v1/chat/"
          "completions, /v1/completions, /v1/models, /health; -1 = off). "
          "Same TLS, bearer token and request limits as gRPC.");
ABSL_FLAG(std::string, served_model_name, "",
          "The model's name in the OpenAI API (/v1/models, the \"model\" "
          "field; requests naming another model get 404); empty = the "
          "model file's name without .gguf.");
ABSL_FLAG(absl::Duration, http_idle_timeout, absl::Seconds(10),
          "HTTP ports (/metrics, the OpenAI API): a connection that sends "
          "nothing for this "
          "long is closed, also in the middle of its request headers (whole "
          "seconds, at least 1s).");
ABSL_FLAG(absl::Duration, http_stream_keepalive, absl::Seconds(15),
          "OpenAI API streams that have sent nothing for this long (a long "
          "prompt's prefill) get an SSE comment line, which clients skip, "
          "so that proxies' read timeouts do not cut them; 0 = never.");
ABSL_FLAG(int, http_max_connections, 1024,
          "HTTP ports (each): connections served at once; further ones "
          "wait in the kernel's accept queue until one closes.");
ABSL_FLAG(int, layer_metrics_every, 1,
          "Record per-layer latency and spike series every Nth engine step "
          "(1 = every step, 0 = off).");
ABSL_FLAG(float, spike_factor, 50.0f,
          "A token spikes at a site when its absmax exceeds this factor x "
          "the calibrated median absmax of the site's served input (plan: "
          "served_median_absmax), or x the median of the step without one.");
ABSL_FLAG(int, threads, 0,
          "Threads of the model's matmuls (0 = OpenMP default: all cores, "
          "or OMP_NUM_THREADS).");
ABSL_FLAG(int, kv_blocks, 512,
          "KV cache pool size in blocks (memory: blocks x block_tokens x "
          "layers x 2 x kv_dim x 4 bytes; 512 x 16 tokens is 377 MB for "
          "SmolLM2-135M).");
ABSL_FLAG(int, block_tokens, 16, "Tokens per KV block.");
ABSL_FLAG(std::string, kv_cache_type, "fp32",
          "KV cache precision: fp32 (exact) or bf16 (half the memory per "
          "token; accuracy in docs/accuracy.md). The QFeP prefix is stored "
          "in the same precision.");
ABSL_FLAG(std::string, kv_cache_bytes, "",
          "KV cache pool size in bytes instead of --kv_blocks: a byte count "
          "with an optional K/M/G/T suffix (2G) or a percentage of the "
          "memory available once the model is loaded (30%; the container's "
          "cgroup limit counts). The per-token cost is logged at start-up.");
ABSL_FLAG(int, max_batch_tokens, 512,
          "Tokens per engine step: the chunked-prefill budget.");
ABSL_FLAG(int, max_running, 16, "Sequences batched together at most.");
ABSL_FLAG(int, max_waiting, 64,
          "Queued requests at most; beyond it requests get "
          "RESOURCE_EXHAUSTED at once.");
ABSL_FLAG(bool, prefix_caching, true,
          "Reuse the KV of full prompt blocks across requests.");
ABSL_FLAG(int, max_new_tokens, 256,
          "Tokens generated when a request does not say (max_new_tokens 0).");
ABSL_FLAG(int, max_stop_sequences, 16, "Stop strings per request at most.");
ABSL_FLAG(int, max_request_bytes, 4 << 20,
          "Largest request message; bigger ones get RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_streams_per_connection, 128,
          "Concurrent RPCs per client connection (HTTP/2 streams).");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "On SIGTERM: how long requests in flight may take to finish "
          "before they are aborted.");

namespace spikeserve {
namespace {

const char* SignalName(int sig) {
  return sig == SIGTERM ? "SIGTERM" : "SIGINT";
}

// Every HTTP connection is a file descriptor: raises the soft limit of
// open files (often 1024) towards the hard one, so that
// --http_max_connections on each HTTP port plus gRPC's and the model's
// files fit.
void RaiseOpenFileLimit(int64_t http_connections) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  const rlim_t want = rlim_t(http_connections) + 1024;
  if (lim.rlim_cur >= want) return;
  const rlim_t before = lim.rlim_cur;
  lim.rlim_cur = std::min(want, lim.rlim_max);
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur < want) {
    LogWarning(absl::StrCat("open files limited to ", lim.rlim_cur,
                            " (hard limit): fewer than ", http_connections,
                            " HTTP connections (--http_max_connections on "
                            "each HTTP port) + 1024 for the rest"));
  } else if (before != lim.rlim_cur) {
    LogInfo(absl::StrCat("open files limit raised from ", before, " to ",
                         lim.rlim_cur));
  }
}

// Ends the process without running destructors, once the server is
// drained (or never served): clients have their answers, the engine and
// gRPC are stopped. What destructors would add is only a wait.
[[noreturn]] void ExitNow(int code) {
  std::fflush(nullptr);
  std::_Exit(code);
}

int Main() {
  ServerOptions o;
  o.model_path = absl::GetFlag(FLAGS_model);
  o.plan_path = absl::GetFlag(FLAGS_plan);
  o.quant = absl::GetFlag(FLAGS_quant);
  o.chat_template_path = absl::GetFlag(FLAGS_chat_template);
  o.host = absl::GetFlag(FLAGS_host);
  absl::StatusOr<LmHeadPrecision> lm_head =
      ParseLmHeadPrecision(absl::GetFlag(FLAGS_lm_head));
  if (!lm_head.ok()) {
    LogError(absl::StrCat("--lm_head: ", lm_head.status().message()));
    return 2;
  }
  o.lm_head = *lm_head;
  absl::StatusOr<int> w4_group = ParseW4Group(absl::GetFlag(FLAGS_w4_group));
  if (!w4_group.ok()) {
    LogError(absl::StrCat("--w4_group: ", w4_group.status().message()));
    return 2;
  }
  o.w4_group = *w4_group;
  o.grpc_port = absl::GetFlag(FLAGS_grpc_port);
  o.engine.threads = absl::GetFlag(FLAGS_threads);
  const int metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (metrics_port < -1 || metrics_port > 65535) {
    LogError("--metrics_port must be in [-1, 65535]");
    return 2;
  }
  if (metrics_port >= 0) {
    const std::string mh = absl::GetFlag(FLAGS_metrics_host);
    o.metrics_bind = absl::StrCat(mh.empty() ? o.host : mh, ":", metrics_port);
  }
  const int http_port = absl::GetFlag(FLAGS_http_port);
  if (http_port < -1 || http_port > 65535) {
    LogError("--http_port must be in [-1, 65535]");
    return 2;
  }
  if (http_port >= 0) o.http_bind = absl::StrCat(o.host, ":", http_port);
  o.served_model_name = absl::GetFlag(FLAGS_served_model_name);
  o.http_limits.idle_timeout = absl::GetFlag(FLAGS_http_idle_timeout);
  o.http_limits.max_connections = absl::GetFlag(FLAGS_http_max_connections);
  o.http_stream_keepalive = absl::GetFlag(FLAGS_http_stream_keepalive);
  if (o.http_stream_keepalive < absl::ZeroDuration()) {
    LogError("--http_stream_keepalive must be 0 (off) or positive");
    return 2;
  }
  if (o.http_limits.idle_timeout < absl::Seconds(1) ||
      o.http_limits.max_connections < 1) {
    LogError(
        "--http_idle_timeout must be at least 1s and "
        "--http_max_connections at least 1");
    return 2;
  }
  RaiseOpenFileLimit(
      int64_t(o.http_limits.max_connections) *
      (int(!o.metrics_bind.empty()) + int(!o.http_bind.empty())));
  o.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  o.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  absl::StatusOr<std::string> token =
      ResolveAuthToken(absl::GetFlag(FLAGS_auth_token_file),
                       std::getenv("SPIKESERVE_AUTH_TOKEN"));
  if (!token.ok()) {
    LogError(token.status().ToString());
    return 2;
  }
  o.auth_token = *std::move(token);
  o.layer_metrics_every = absl::GetFlag(FLAGS_layer_metrics_every);
  o.spike_factor = absl::GetFlag(FLAGS_spike_factor);
  if (o.layer_metrics_every < 0 || !(o.spike_factor > 0)) {
    LogError("--layer_metrics_every must be >= 0 and --spike_factor > 0");
    return 2;
  }
  o.engine.kv_blocks = absl::GetFlag(FLAGS_kv_blocks);
  o.engine.block_tokens = absl::GetFlag(FLAGS_block_tokens);
  o.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
  {
    const std::string t = absl::GetFlag(FLAGS_kv_cache_type);
    if (t != "fp32" && t != "bf16") {
      LogError(absl::StrCat("--kv_cache_type must be fp32 or bf16, got \"", t,
                            "\""));
      return 2;
    }
    o.kv_bf16 = t == "bf16";
  }
  o.engine.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  o.engine.max_running = absl::GetFlag(FLAGS_max_running);
  o.engine.max_waiting = absl::GetFlag(FLAGS_max_waiting);
  // Checked here, not after the weights load (a minute on an 8B model):
  // with --max_waiting 0 not even the warm-up request was taken.
  if (o.engine.kv_blocks < 1 || o.engine.block_tokens < 1 ||
      o.engine.max_batch_tokens < 1 || o.engine.max_running < 1 ||
      o.engine.max_waiting < 1) {
    LogError(
        "--kv_blocks, --block_tokens, --max_batch_tokens, --max_running and "
        "--max_waiting must each be >= 1");
    return 2;
  }
  if (!o.kv_cache_bytes.empty()) {
    if (absl::StatusOr<int64_t> b =
            ParseKvCacheBytes(o.kv_cache_bytes, AvailableMemoryBytes());
        !b.ok()) {
      LogError(absl::StrCat("--kv_cache_bytes: ", b.status().message()));
      return 2;
    }
  }
  const absl::Duration drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  if (drain_timeout < absl::ZeroDuration() ||
      drain_timeout == absl::InfiniteDuration()) {
    LogError("--drain_timeout must be a finite duration >= 0, e.g. 30s");
    return 2;
  }
  o.engine.prefix_caching = absl::GetFlag(FLAGS_prefix_caching);
  o.limits.default_max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  o.limits.max_stop_sequences = absl::GetFlag(FLAGS_max_stop_sequences);
  o.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  o.max_streams_per_connection =
      absl::GetFlag(FLAGS_max_streams_per_connection);
  if (o.max_request_bytes < 1024 || o.max_streams_per_connection < 1) {
    LogError(
        "--max_request_bytes must be >= 1024 and "
        "--max_streams_per_connection >= 1");
    return 2;
  }
  if (o.model_path.empty()) {
    LogError("--model is required (or SPIKESERVE_MODEL)");
    return 2;
  }
  if (o.limits.default_max_new_tokens < 1 || o.limits.max_stop_sequences < 0 ||
      o.engine.threads < 0) {
    LogError(
        "--max_new_tokens must be >= 1, --max_stop_sequences and "
        "--threads >= 0");
    return 2;
  }

  // Signals are taken synchronously (sigwait) by one thread; block them
  // before any other thread exists so none of them gets one.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<SpikeServer>> server = SpikeServer::Start(o);
  if (!server.ok()) {
    LogError(server.status().ToString());
    return 1;
  }
  // The signal thread. While the model loads (seconds) a signal ends the
  // process at once: health never said SERVING, no request was admitted,
  // there is nothing to drain, and a load cannot be interrupted midway.
  // Once serving, it hands the signal to this thread, which drains.
  std::mutex mu;
  std::condition_variable cv;
  bool serving = false;
  int received = 0;
  std::thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!serving) {
        LogInfo(absl::StrCat("received ", SignalName(sig),
                             " during start-up (loading the model): stopped "
                             "before serving"));
        ExitNow(0);
      }
      received = sig;
    }
    cv.notify_all();
    // A Ctrl-C while draining (an operator's second one) stops at once:
    // the requests still in flight end without their answers. A repeated
    // SIGTERM (process managers may resend it) leaves the drain going.
    while (true) {
      sigwait(&signals, &sig);
      if (sig == SIGINT) {
        LogWarning(
            "received SIGINT while draining: exiting without waiting for "
            "the requests in flight");
        ExitNow(1);
      }
      LogInfo("received SIGTERM while draining: the drain goes on");
    }
  }).detach();
  // Called by Load just before health turns SERVING: from here on a signal
  // drains.
  const auto before_serving = [&] {
    std::lock_guard<std::mutex> lock(mu);
    serving = true;
  };
  if (absl::Status s = (*server)->Load(before_serving); !s.ok()) {
    LogError(absl::StrCat("cannot load the model: ", s.ToString()));
    (*server)->Drain(absl::ZeroDuration());
    ExitNow(1);
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return received != 0; });
  }
  LogInfo(absl::StrCat("received ", SignalName(received)));
  (*server)->Drain(drain_timeout);
  ExitNow(0);
}

}  // namespace
}  // namespace spikeserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves a LLaMA-family GGUF model over gRPC (spikeserve.v1.Generation). "
      "Every flag may also be set as SPIKESERVE_<FLAG>.");
  spikeserve::ShowOwnFlagsInHelp();
  spikeserve::AcceptDashedFlags(argc, argv);
  if (absl::Status s = spikeserve::ApplyEnvironmentFlags("SPIKESERVE_");
      !s.ok()) {
    spikeserve::LogError(s.ToString());
    return 2;
  }
  absl::ParseCommandLine(argc, argv);
  return spikeserve::Main();
}
