#include "server/server.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "base/text_file.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "oneapi/dnnl/dnnl.h"
#include "runtime/linear/int8_linear.h"
#include "runtime/linear/onednn_matmul.h"
#include "runtime/linear/quantize.h"
#include "runtime/linear/w4a8_linear.h"
#include "runtime/model/attention.h"
#include "runtime/model/site.h"
#include "runtime/quant/quant_plan.h"
#include "runtime/serving/kv_sizing.h"
#include "runtime/serving/transient_thread.h"

namespace spikeserve {
namespace {

// Largest chat template or TLS file read: a path given by mistake (a model,
// /dev/zero) fails there instead of filling the pod's memory.
constexpr size_t kMaxSmallFileBytes = size_t{16} << 20;

constexpr char kServiceName[] = "spikeserve.v1.Generation";

std::string OneDnnVersion() {
  const dnnl_version_t* v = dnnl_version();
  return absl::StrCat(v->major, ".", v->minor, ".", v->patch);
}

// The INT8 kernels serving `model`, for the start-up log: our own for every
// batch (AVX2: one INT8 copy), or oneDNN's beside ours for small batches
// (two copies) or alone (one).
std::string Int8KernelsForLog(const Model& model) {
  if (model.packed_max_rows() == Int8Linear::kEveryBatch) {
    return absl::StrCat("INT8 kernel ", Int8Linear::PackedKernelDescription(),
                        " (own, one INT8 copy)");
  }
  return absl::StrCat(
      "oneDNN INT8 kernel ", model.int8_impl(), ", own INT8 kernel ",
      model.packed_max_rows() > 0 ? Int8Linear::PackedKernelDescription()
                                  : std::string("none (one INT8 copy)"));
}

// GetModelInfo's answer.
v1::ModelInfo DescribeModel(const Model& model, const QuantOptions& quant,
                            const ContextBudget& context,
                            const v1::QuantPlan* plan,
                            const std::vector<int32_t>& prefix,
                            const Tokenizer& tok) {
  const ModelConfig& c = model.config();
  v1::ModelInfo info;
  info.set_name(c.name);
  info.set_architecture(c.architecture);
  info.set_layers(c.n_layers);
  info.set_hidden(c.hidden);
  info.set_heads(c.n_heads);
  info.set_kv_heads(c.n_kv_heads);
  info.set_vocab_size(c.vocab_size);
  // What one request can use, not the model's trained context: the QFeP
  // prefix and the KV pool take their share (context_budget.h).
  info.set_context_length(context.MaxTokens());
  v1::QuantSummary* q = info.mutable_quant();
  q->set_activation_mode(quant.w8a8 ? ActQuantModeName(quant.mode) : "fp32");
  for (const SiteKey& k : quant.fp32_sites) {
    q->add_qfem_modules(SiteKeyName(k));
  }
  q->set_smoothing(!quant.smooth_scales.empty());
  q->set_rotation(quant.down_hadamard);
  q->set_norm_rotation(quant.norm_hadamard);
  q->set_int8_impl(model.int8_impl());
  if (plan != nullptr) q->set_plan_model_hash(plan->model().hash());
  for (int l = 0; l < c.n_layers; ++l) {
    for (Site site : kAllSites) {
      if (const int group = model.W4Group({l, site}); group > 0) {
        q->add_w4_modules(SiteKeyName({l, site}));
        q->add_w4_groups(group);
        q->add_w4_with_min(model.W4HasMin({l, site}));
        q->add_w4_importance_weighted(model.W4ImportanceWeighted({l, site}));
        q->add_w4_from_file(model.W4Given({l, site}));
      }
    }
  }
  if (q->w4_modules_size() > 0) {
    q->set_w4_kernel(W4A8Linear::KernelDescription());
  }
  info.mutable_qfep_prefix_ids()->Add(prefix.begin(), prefix.end());
  absl::StatusOr<std::string> text = tok.Decode(prefix);
  if (text.ok()) info.set_qfep_prefix_text(*text);
  return info;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SpikeServer>> SpikeServer::Start(
    const ServerOptions& options) {
  if (options.grpc_port < 0 || options.grpc_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--grpc_port must be in [0, 65535], got ", options.grpc_port));
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
      MakeServerCredentials(options.tls);
  if (!creds.ok()) return creds.status();
  std::unique_ptr<SpikeServer> s(new SpikeServer(options));
  s->auth_ = std::make_unique<TokenAuth>(options.auth_token);
  s->service_.SetAuth(s->auth_.get());
  // Metrics first: /metrics answers while the model loads.
  absl::StatusOr<std::unique_ptr<ServingMetrics>> metrics =
      ServingMetrics::Create(options.metrics_bind, options.http_limits);
  if (!metrics.ok()) return metrics.status();
  s->metrics_ = *std::move(metrics);
  s->service_.SetMetrics(s->metrics_.get());
  // Both must be set up before the builder exists (toolchain.md).
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Without this a second server on a taken port starts silently and
  // shares its traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Limits a client cannot exceed: gRPC answers RESOURCE_EXHAUSTED for a
  // bigger message; streams beyond the bound wait for HTTP/2 flow control.
  builder.SetMaxReceiveMessageSize(options.max_request_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             options.max_streams_per_connection);
  const std::string address =
      absl::StrCat(options.host, ":", options.grpc_port);
  builder.AddListeningPort(address, *creds, &s->port_);
  builder.RegisterService(&s->service_);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address,
                     " (port taken, host not an address of this machine, or "
                     "TLS files gRPC refused)"));
  }
  s->SetHealth(false);
  LogInfo(absl::StrCat(
      "listening on ", options.host, ":", s->port_,
      options.tls.cert_file.empty()
          ? " (plaintext"
          : (options.tls.client_ca_file.empty() ? " (TLS" : " (mutual TLS"),
      s->auth_->enabled() ? ", bearer token required" : "",
      "; health NOT_SERVING until the model is loaded)"));
  if (!options.metrics_bind.empty()) {
    LogInfo(absl::StrCat("metrics on port ", s->metrics_->port(), " /metrics"));
  }
  if (!options.http_bind.empty()) {
    OpenAiHttpOptions ho;
    ho.bind = options.http_bind;
    ho.limits = options.http_limits;
    ho.stream_keepalive = options.http_stream_keepalive;
    ho.max_body_bytes = size_t(options.max_request_bytes);
    if (!options.tls.cert_file.empty()) {
      if (!options.tls.client_ca_file.empty()) {
        return absl::InvalidArgumentError(
            "--tls_client_ca: the HTTP API does not verify client "
            "certificates; turn it off (--http_port -1) for mutual TLS");
      }
      absl::StatusOr<std::string> cert =
          ReadTextFile(options.tls.cert_file, kMaxSmallFileBytes);
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key =
          ReadTextFile(options.tls.key_file, kMaxSmallFileBytes);
      if (!key.ok()) return key.status();
      ho.tls_cert_pem = *std::move(cert);
      ho.tls_key_pem = *std::move(key);
    }
    absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> http =
        OpenAiHttpServer::Start(ho, s->auth_.get(), s->metrics_.get(),
                                &s->service_.calls());
    if (!http.ok()) return http.status();
    s->http_ = *std::move(http);
    LogInfo(absl::StrCat("OpenAI HTTP API on port ", s->http_->port(),
                         ho.tls_cert_pem.empty() ? " (plaintext" : " (TLS",
                         s->auth_->enabled() ? ", bearer token required" : "",
                         "): /v1/chat/completions, /v1/completions, "
                         "/v1/models, /health"));
  }
  return s;
}

SpikeServer::~SpikeServer() {
  if (!stopped_) Drain(absl::ZeroDuration());
}

void SpikeServer::SetHealth(bool serving) {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus("", serving);
  health->SetServingStatus(kServiceName, serving);
}

absl::Status SpikeServer::Load(const std::function<void()>& before_serving) {
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<v1::QuantPlan> plan;
  if (!options_.plan_path.empty()) {
    absl::StatusOr<v1::QuantPlan> p = ReadQuantPlan(options_.plan_path);
    if (!p.ok()) return p.status();
    plan = *std::move(p);
  }
  QuantOptions base;
  base.lm_head = options_.lm_head;
  base.kv_bf16 = options_.kv_bf16;
  if (plan && !options_.quant.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--quant ", options_.quant,
        " and --plan: a plan carries its own quantization; give one of them"));
  }
  if (!plan) {
    if (options_.quant.empty() || options_.quant == "w8a8" ||
        options_.quant == "w4a8") {
      // Row-grouping invariant (design.md) and calibration-free: a new
      // model serves quantized at once; a plan is the way to its best
      // accuracy, not the way in.
      base.w8a8 = true;
      base.mode = ActQuantMode::kPerTokenDynamic;
      base.w4_everywhere = options_.quant == "w4a8";
      base.w4_everywhere_group = options_.w4_group;
      LogInfo(absl::StrCat(
          "no --plan: serving ",
          base.w4_everywhere ? "W4A8 (--quant w4a8)" : "W8A8 (--quant w8a8)",
          " with per-token dynamic activation scales, no calibration; "
          "spikeserve-calibrate writes a plan with QFeM/QFeP for the best "
          "accuracy"));
    } else if (options_.quant != "fp32") {
      return absl::InvalidArgumentError(absl::StrCat(
          "--quant must be w8a8, w4a8 or fp32, got \"", options_.quant, "\""));
    }
  }
  // A --chat_template file is read and parsed before the weights load: a
  // typo fails in milliseconds, not after the model's conversion.
  std::string template_source, template_origin;
  if (!options_.chat_template_path.empty()) {
    absl::StatusOr<std::string> t =
        ReadTextFile(options_.chat_template_path, kMaxSmallFileBytes);
    if (!t.ok()) {
      return absl::Status(
          t.status().code(),
          absl::StrCat("--chat_template: ", t.status().message()));
    }
    template_source = *std::move(t);
    template_origin =
        absl::StrCat("--chat_template ", options_.chat_template_path);
    if (absl::StatusOr<ChatTemplate> parsed =
            ChatTemplate::Parse(template_source);
        !parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("chat template (", template_origin,
                       ") does not parse: ", parsed.status().message()));
    }
  }
  // Loading runs OpenMP regions: on a transient thread, so that the engine
  // thread's is the only OpenMP pool left (see transient_thread.h).
  absl::StatusOr<ModelBundle> bundle = RunOnTransientThread([&] {
    return plan ? LoadModelBundle(options_.model_path, *plan, base)
                : LoadModelBundle(options_.model_path, base);
  });
  if (!bundle.ok()) return bundle.status();
  bundle_ = *std::move(bundle);
  if (template_source.empty() && !bundle_.chat_template.empty()) {
    template_source = std::move(bundle_.chat_template);
    template_origin = "tokenizer.chat_template of the GGUF file";
  }
  if (!template_source.empty()) {
    absl::StatusOr<std::unique_ptr<ChatPrompt>> chat = ChatPrompt::Create(
        template_source, template_origin, bundle_.tokenizer.get());
    if (!chat.ok()) return chat.status();
    chat_ = *std::move(chat);
    LogInfo(absl::StrCat("chat template: ", template_origin, " (",
                         template_source.size(), " bytes)"));
  } else {
    LogWarning(
        "no chat template (the GGUF has no tokenizer.chat_template and no "
        "--chat_template was given): chat requests will be refused");
  }
  const Model& model = *bundle_.model;
  const ModelConfig& c = model.config();
  LogInfo(absl::StrCat("model ", c.name, " (", c.architecture, "): ",
                       c.n_layers, " layers, hidden ", c.hidden, ", vocab ",
                       c.vocab_size, ", context ", c.context_length));
  const Model::WeightMemory wm = model.weight_memory();
  LogInfo(absl::StrFormat(
      "weights kept: %.1f MiB (INT8 %.1f, 4-bit %.1f, BF16 %.1f, FP32 %.1f, "
      "embedding as stored %.1f)",
      wm.total() / 1048576.0, wm.int8 / 1048576.0, wm.int4 / 1048576.0,
      wm.bf16 / 1048576.0, wm.fp32 / 1048576.0, wm.embedding / 1048576.0));
  LogInfo(absl::StrCat(
      "quantization: ",
      model.quant().w8a8
          ? absl::StrCat(
                model.w4_site_count() > 0 ? "W8A8/W4A8 " : "W8A8 ",
                ActQuantModeName(model.quant().mode), ", ",
                Int8KernelsForLog(model), ", QFeM sites ",
                model.quant().fp32_sites.size(),
                model.w4_site_count() > 0
                    ? absl::StrCat(", W4A8 sites ", model.w4_site_count(),
                                   " (kernel ", W4A8Linear::KernelDescription(),
                                   ")")
                    : std::string())
          : std::string("none (FP32)"),
      ", QFeP prefix ", bundle_.qfep_prefix.size(), " tokens, lm_head ",
      LmHeadPrecisionName(model.quant().lm_head), ", attention kernel ",
      AttentionKernelName(), ", CPU ISA ", OneDnnCpuIsa()));
  if (model.quant().w8a8 &&
      model.quant().mode == ActQuantMode::kPerTensorDynamic) {
    LogWarning(
        "activation mode per-tensor-dynamic is for evaluation only: one "
        "scale over the rows computed together makes a request's tokens "
        "depend on prefix-cache hits, prefill chunking and batch company "
        "(not deterministic); recalibrate with --mode per-token-dynamic or "
        "per-tensor-static");
  }
  if (model.quant().w8a8 && !Int8MatmulHasVnni()) {
    LogWarning(absl::StrCat("this CPU has no AVX-512 VNNI (oneDNN ISA ",
                            OneDnnCpuIsa(), "): INT8 runs on '",
                            model.int8_impl(),
                            "'; expect lower speed than on a VNNI CPU"));
  }

  // Per-layer metrics; spike tokens are judged against the calibrated median
  // token absmax of each site's served input when the plan has one.
  LayerMetricsOptions lmo;
  lmo.n_layers = c.n_layers;
  lmo.every = options_.layer_metrics_every;
  lmo.spike_factor = options_.spike_factor;
  if (plan) SetSpikeReferences(*plan, &lmo);
  layer_metrics_ =
      std::make_unique<LayerMetrics>(metrics_->registry(), std::move(lmo));
  std::vector<ForwardObserver*> observers = {layer_metrics_.get()};
  if (options_.engine.observer != nullptr) {
    observers.push_back(options_.engine.observer);
  }
  observers_ = std::make_unique<ForwardObserverList>(std::move(observers));

  EngineOptions eo = options_.engine;
  const int64_t per_token =
      KvBytesPerToken(c.n_layers, c.kv_dim(), model.quant().kv_bf16);
  if (!options_.kv_cache_bytes.empty()) {
    absl::StatusOr<int> blocks =
        KvBlocksForBytes(options_.kv_cache_bytes, per_token, eo.block_tokens,
                         AvailableMemoryBytes());
    if (!blocks.ok()) return blocks.status();
    eo.kv_blocks = *blocks;
  }
  LogInfo(absl::StrCat("KV cache: ", eo.kv_blocks, " blocks x ",
                       eo.block_tokens,
                       " tokens = ", int64_t(eo.kv_blocks) * eo.block_tokens,
                       " tokens, ", per_token >> 10, " KiB per token (",
                       model.quant().kv_bf16 ? "BF16" : "FP32", "), ",
                       (per_token * eo.block_tokens * eo.kv_blocks) >> 20,
                       " MiB in all, touched as it fills"));
  eo.prefix = bundle_.qfep_prefix;
  eo.observer = observers_.get();
  // Engine::Create computes the QFeP prefix: OpenMP, so transient too.
  absl::StatusOr<std::unique_ptr<Engine>> engine = RunOnTransientThread([&] {
    return Engine::Create(bundle_.model.get(), bundle_.tokenizer.get(), eo);
  });
  if (!engine.ok()) return engine.status();
  engine_ = *std::move(engine);
  // The QFeP prefix is computed: the FP32 copies of quantized matrices have
  // no reader left. Before the warm-up request, so the engine thread's first
  // forward happens after this (the submission's lock orders them).
  // The model file is closed: the kernels hold their own copies.
  bundle_.model->ReleaseUnquantizedWeights();
  LogInfo(
      "closed the model file: the QFeP prefix is computed and the "
      "kernels hold their own weight copies");

  // Warm-up: one short request through the whole path (scheduler, kernels,
  // sampler), so the first client does not pay first-touch costs.
  {
    GenerationRequest warm;
    warm.id = "spikeserve-warmup";
    warm.prompt = {std::max(0, bundle_.tokenizer->bos_id())};
    // CheckUsable (Engine::Create) guarantees room for 1 + 1 tokens.
    warm.stopping.max_new_tokens =
        std::min(2, engine_->context_budget().MaxTokens() - 1);
    warm.stopping.ignore_eos = true;
    std::promise<absl::Status> done;
    absl::Status s = engine_->Submit(warm, [&](const GenerationUpdate& u) {
      if (u.finished) done.set_value(u.status);
    });
    if (s.ok()) s = done.get_future().get();
    if (!s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("warm-up request failed: ", s.message()));
    }
  }

  auto backend = std::make_unique<ServingBackend>();
  backend->engine = engine_.get();
  backend->tokenizer = bundle_.tokenizer.get();
  backend->config = &model.config();
  backend->limits = options_.limits;
  backend->limits.context = engine_->context_budget();
  backend->info = DescribeModel(model, model.quant(), engine_->context_budget(),
                                plan ? &*plan : nullptr, bundle_.qfep_prefix,
                                *bundle_.tokenizer);
  backend->chat = chat_.get();
  backend->model_id = options_.served_model_name;
  if (backend->model_id.empty()) {
    absl::string_view base = options_.model_path;
    if (size_t slash = base.rfind('/'); slash != base.npos) {
      base.remove_prefix(slash + 1);
    }
    absl::ConsumeSuffix(&base, ".gguf");
    backend->model_id = std::string(base);
  }
  backend->info.set_has_chat_template(chat_ != nullptr);
  backend->info.set_tool_call_syntax(ToolCallSyntaxName(
      chat_ != nullptr ? chat_->tool_call_syntax() : ToolCallSyntax::kNone));
  metrics_->SetInfo(
      {{"version", SPIKESERVE_VERSION},
       {"onednn", OneDnnVersion()},
       {"int8_impl", model.int8_impl().empty() ? "none" : model.int8_impl()},
       {"architecture", c.architecture}},
      {{"activation_mode", backend->info.quant().activation_mode()},
       {"qfem_sites", std::to_string(model.quant().fp32_sites.size())},
       {"w4_sites", std::to_string(model.w4_site_count())},
       {"w4_kernel", backend->info.quant().w4_kernel()},
       {"qfep_tokens", std::to_string(bundle_.qfep_prefix.size())},
       {"smoothing", model.quant().smooth_scales.empty() ? "false" : "true"},
       {"rotation", model.quant().down_hadamard ? "true" : "false"},
       {"norm_rotation", model.quant().norm_hadamard ? "true" : "false"},
       {"lm_head", LmHeadPrecisionName(model.quant().lm_head)},
       {"plan_model_hash", plan ? plan->model().hash() : ""}});
  metrics_->AttachEngine(engine_.get());
  backend_ = std::move(backend);
  if (before_serving) before_serving();
  service_.SetBackend(backend_.get());
  if (http_) http_->SetBackend(backend_.get());
  SetHealth(true);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  LogInfo(absl::StrCat("ready in ", absl::StrFormat("%.2f", secs),
                       " s; health SERVING"));
  return absl::OkStatus();
}

int SpikeServer::Drain(absl::Duration timeout) {
  if (stopped_ || server_ == nullptr) return 0;
  stopped_ = true;
  service_.StartDraining();
  if (http_) http_->StartDraining();
  SetHealth(false);
  const int active = service_.calls().active();
  LogInfo(absl::StrCat("draining: health NOT_SERVING, ", active,
                       " generation calls in flight, waiting up to ",
                       absl::FormatDuration(timeout)));
  const auto deadline =
      std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  service_.calls().WaitIdle(deadline);
  const int aborted = service_.calls().active();
  // Aborting first lets every reactor finish with its final message (its
  // OnDone marks it written, bounded: a client that does not read gets
  // cancelled after 1 s); then the gRPC server has nothing left to wait
  // for. No grace period for gRPC itself: it only waited for idle client
  // connections, which it always held to the deadline (2 s after every
  // drain that had a client connected).
  if (engine_) engine_->Shutdown();
  service_.calls().WaitIdle(std::chrono::steady_clock::now() +
                            std::chrono::seconds(1));
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  http_.reset();
  LogInfo(absl::StrCat("stopped (", aborted,
                       " requests aborted at the drain "
                       "timeout)"));
  return aborted;
}

}  // namespace spikeserve
