#include "server/grpc/generation_service.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpc/support/time.h"
#include "server/chat/chat_prompt.h"
#include "server/grpc/grpc_status.h"
#include "server/grpc/response_conversion.h"

namespace spikeserve {
namespace {

// Most ids one Detokenize call takes (its text is at most this times the
// longest token).
constexpr int kMaxDetokenizeIds = 1 << 18;

// The syntax a request's answer is parsed for calls in: a chat with tools.
ToolCallSyntax ToolsOf(const ServingBackend& b, const v1::GenerateRequest& r) {
  if (b.chat == nullptr || !r.has_chat() || r.chat().tools_json().empty()) {
    return ToolCallSyntax::kNone;
  }
  return b.chat->tool_call_syntax();
}

// The status a finished request ends its call with.
grpc::Status FinalStatus(const GenerationUpdate& u) {
  if (!u.status.ok()) return ToGrpcStatus(u.status);
  if (u.finish_reason == FinishReason::kDeadline) {
    return grpc::Status(
        grpc::StatusCode::DEADLINE_EXCEEDED,
        absl::StrCat("deadline passed after ", u.completion_tokens, " tokens"));
  }
  return grpc::Status::OK;
}

// The status of a call that ended because its client went away: gRPC
// reports a passed deadline as a cancellation too, so the deadline tells
// them apart. Without this such calls ended (and were counted) as OK.
// The client's deadline passes before the server's: the server sets its own
// on arrival from the client's remaining timeout, so it lies the transit
// time later, and the client's cancellation can reach us first. A
// cancellation within the last quarter of the timeout (at most 250 ms) is
// therefore counted as the deadline; `start` is when the call arrived.
grpc::Status EndedByClientStatus(absl::Time start, absl::Time deadline) {
  const absl::Duration slack =
      std::min(absl::Milliseconds(250), (deadline - start) / 4);
  if (deadline != absl::InfiniteFuture() && absl::Now() >= deadline - slack) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        "the call's deadline passed");
  }
  return grpc::Status(grpc::StatusCode::CANCELLED,
                      "the client cancelled the call");
}

// FinalStatus of a call whose client may have cancelled it.
grpc::Status FinalStatus(const GenerationUpdate& u, bool client_gone,
                         absl::Time start, absl::Time deadline) {
  if (client_gone && u.status.ok() &&
      u.finish_reason == FinishReason::kAborted) {
    return EndedByClientStatus(start, deadline);
  }
  return FinalStatus(u);
}

// Unary Generate: accumulates every update into the response; the engine's
// final update finishes the call. Owns itself (deleted in OnDone, which
// gRPC calls after Finish, i.e. after the engine's last callback).
class GenerateReactor final : public grpc::ServerUnaryReactor {
 public:
  GenerateReactor(Engine* engine, CallCounter* calls, ServingMetrics* metrics,
                  ToolCallSyntax tools, v1::GenerateResponse* response)
      : engine_(engine),
        calls_(calls),
        metrics_(metrics),
        tools_(tools),
        response_(response) {
    calls_->Add();
  }

  void Start(GenerationRequest request) {
    id_ = request.id;
    start_ = absl::Now();
    deadline_ = request.deadline;
    response_->set_request_id(id_);
    absl::Status s = engine_->Submit(
        std::move(request), [this](const GenerationUpdate& u) { OnUpdate(u); });
    // On success the engine may already be finishing this call: touch
    // nothing of `this` after a successful Submit.
    if (!s.ok()) {
      finished_.store(true);  // a late OnCancel must not abort the id
      End(ToGrpcStatus(s));
    }
  }

  // Client cancellation and lost connections stop generation at the next
  // engine step, which frees the sequence's KV blocks.
  void OnCancel() override {
    cancelled_.store(true);
    if (!finished_.load()) engine_->Abort(id_);
  }
  void OnDone() override {
    CallCounter* calls = calls_;
    delete this;
    calls->Done();
  }

 private:
  void OnUpdate(const GenerationUpdate& u) {
    AppendUpdate(u, response_);
    metrics_.OnUpdate(u);
    if (!u.finished) return;
    SetToolCalls(tools_, id_, response_->text(), response_);
    finished_.store(true);
    End(FinalStatus(u, cancelled_.load(), start_, deadline_));
  }
  void End(const grpc::Status& status) {
    metrics_.OnFinish("Generate", status.error_code());
    Finish(status);
  }

  Engine* const engine_;
  CallCounter* const calls_;
  RequestMetrics metrics_;
  const ToolCallSyntax tools_;  // kNone: no tools in the request
  v1::GenerateResponse* const response_;
  std::string id_;
  absl::Time start_;  // when the call was submitted
  absl::Time deadline_ = absl::InfiniteFuture();
  std::atomic<bool> finished_{false};
  std::atomic<bool> cancelled_{false};  // OnCancel ran (client or deadline)
};

// Streaming Generate. Updates arrive on the engine thread and must not
// block it, while gRPC allows one write in flight: updates that arrive
// during a write are merged into one pending message (so a slow client gets
// fewer, larger messages instead of an unbounded queue).
class GenerateStreamReactor final
    : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateStreamReactor(Engine* engine, CallCounter* calls,
                        ServingMetrics* metrics, ToolCallSyntax tools)
      : engine_(engine), calls_(calls), metrics_(metrics), tools_(tools) {
    calls_->Add();
  }
  // Ends the call before any generation (validation or submission failed).
  void Reject(const grpc::Status& status) {
    {
      // Nothing was submitted: a late OnCancel must not abort anything
      // (another request may hold the same id).
      std::lock_guard<std::mutex> lock(mu_);
      finished_ = true;
    }
    metrics_.OnFinish("GenerateStream", status.error_code());
    Finish(status);
  }

  void Start(GenerationRequest request) {
    id_ = request.id;
    start_ = absl::Now();
    deadline_ = request.deadline;
    absl::Status s = engine_->Submit(
        std::move(request), [this](const GenerationUpdate& u) { OnUpdate(u); });
    if (!s.ok()) Reject(ToGrpcStatus(s));
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok && !write_failed_) {
      // The client is gone: stop generating; the final update ends the call.
      write_failed_ = true;
      if (!finished_) engine_->Abort(id_);
    }
    Pump(std::move(lock));
  }
  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (!finished_ && engine_ != nullptr) engine_->Abort(id_);
  }
  void OnDone() override {
    CallCounter* calls = calls_;
    delete this;
    calls->Done();
  }

 private:
  void OnUpdate(const GenerationUpdate& u) {
    metrics_.OnUpdate(u);
    std::unique_lock<std::mutex> lock(mu_);
    AppendUpdate(u, &pending_);
    has_pending_ |= !u.text.empty() || !u.tokens.empty() || u.finished;
    if (tools_ != ToolCallSyntax::kNone) answer_ += u.text;
    if (u.finished) {
      SetToolCalls(tools_, id_, answer_, &pending_);
      finished_ = true;
      final_status_ =
          FinalStatus(u, cancelled_ || write_failed_, start_, deadline_);
      metrics_.OnFinish("GenerateStream", final_status_.error_code());
    }
    Pump(std::move(lock));
  }

  // Starts the next write, or the finish once everything is written.
  // Called with mu_ held; releases it before calling into gRPC, after which
  // `this` may be deleted (OnDone) and is not touched again.
  void Pump(std::unique_lock<std::mutex> lock) {
    if (writing_ || call_done_) return;
    if (has_pending_ && !write_failed_) {
      in_flight_ = std::move(pending_);
      pending_.Clear();
      has_pending_ = false;
      in_flight_.set_request_id(id_);
      if (finished_) {
        call_done_ = true;
        const grpc::Status status = final_status_;
        lock.unlock();
        StartWriteAndFinish(&in_flight_, grpc::WriteOptions(), status);
        return;
      }
      writing_ = true;
      lock.unlock();
      StartWrite(&in_flight_);
      return;
    }
    if (finished_) {
      call_done_ = true;
      const grpc::Status status = final_status_;
      lock.unlock();
      Finish(status);
    }
  }

  Engine* const engine_;
  CallCounter* const calls_;
  RequestMetrics metrics_;      // engine thread only
  const ToolCallSyntax tools_;  // kNone: no tools in the request
  std::string answer_;          // with tools: the whole text so far
  std::string id_;
  absl::Time start_;  // when the call was submitted
  absl::Time deadline_ = absl::InfiniteFuture();
  std::mutex mu_;
  v1::GenerateResponse pending_;    // merged updates not yet written
  v1::GenerateResponse in_flight_;  // the message being written
  bool has_pending_ = false;
  bool writing_ = false;
  bool write_failed_ = false;
  bool cancelled_ = false;  // OnCancel ran (client or deadline)
  bool finished_ = false;   // the engine sent its final update
  bool call_done_ = false;  // Finish (or WriteAndFinish) was started
  grpc::Status final_status_;
};

}  // namespace

grpc::ServerUnaryReactor* GenerationService::FinishNow(
    grpc::CallbackServerContext* context, const char* rpc,
    const grpc::Status& status) {
  if (metrics_ != nullptr) metrics_->OnRpcDone(rpc, status.error_code());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

const ServingBackend* GenerationService::Backend(
    const grpc::CallbackServerContext* context, grpc::Status* why) const {
  if (auth_ != nullptr) {
    *why = auth_->Check(*context);
    if (!why->ok()) return nullptr;
  }
  const ServingBackend* b = backend_.load();
  if (b == nullptr) {
    *why = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the model is still loading; retry shortly");
  }
  return b;
}

grpc::Status GenerationService::Prepare(const ServingBackend& backend,
                                        grpc::CallbackServerContext* context,
                                        const v1::GenerateRequest& request,
                                        GenerationRequest* out) {
  if (draining_.load()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is draining; retry on another replica");
  }
  absl::StatusOr<GenerationRequest> r =
      ToGenerationRequest(request, *backend.tokenizer, *backend.config,
                          backend.limits, backend.chat);
  if (!r.ok()) return ToGrpcStatus(r.status());
  if (r->id.empty()) {
    absl::StatusOr<std::string> id = NewServerRequestId();
    if (!id.ok()) return ToGrpcStatus(id.status());
    r->id = *std::move(id);
  }
  const gpr_timespec deadline =
      gpr_convert_clock_type(context->raw_deadline(), GPR_CLOCK_REALTIME);
  if (gpr_time_cmp(deadline, gpr_inf_future(GPR_CLOCK_REALTIME)) != 0) {
    // In absl::Duration arithmetic, which saturates: seconds times 1e9 in
    // int64 wrapped negative past the year 2262 (grpc-go's "no timeout",
    // WithTimeout(MaxInt64)), and such requests ended at once with
    // DEADLINE_EXCEEDED.
    r->deadline = absl::UnixEpoch() + absl::Seconds(deadline.tv_sec) +
                  absl::Nanoseconds(deadline.tv_nsec);
  }
  *out = *std::move(r);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* GenerationService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request,
    v1::GenerateResponse* response) {
  grpc::Status why;
  const ServingBackend* b = Backend(context, &why);
  if (b == nullptr) return FinishNow(context, "Generate", why);
  GenerationRequest native;
  if (grpc::Status s = Prepare(*b, context, *request, &native); !s.ok()) {
    return FinishNow(context, "Generate", s);
  }
  auto* reactor = new GenerateReactor(b->engine, &calls_, metrics_,
                                      ToolsOf(*b, *request), response);
  reactor->Start(std::move(native));
  return reactor;
}

grpc::ServerWriteReactor<v1::GenerateResponse>*
GenerationService::GenerateStream(grpc::CallbackServerContext* context,
                                  const v1::GenerateRequest* request) {
  grpc::Status why;
  const ServingBackend* b = Backend(context, &why);
  GenerationRequest native;
  if (b != nullptr) why = Prepare(*b, context, *request, &native);
  auto* reactor = new GenerateStreamReactor(
      b ? b->engine : nullptr, &calls_, metrics_,
      b ? ToolsOf(*b, *request) : ToolCallSyntax::kNone);
  if (!why.ok()) {
    reactor->Reject(why);
    return reactor;
  }
  reactor->Start(std::move(native));
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(
    grpc::CallbackServerContext* context, const v1::TokenizeRequest* request,
    v1::TokenizeResponse* response) {
  grpc::Status why;
  const ServingBackend* b = Backend(context, &why);
  if (b == nullptr) return FinishNow(context, "Tokenize", why);
  absl::StatusOr<std::vector<int32_t>> ids =
      b->tokenizer->Encode(request->text(), request->add_special_tokens(),
                           /*parse_special=*/request->add_special_tokens());
  if (!ids.ok())
    return FinishNow(context, "Tokenize", ToGrpcStatus(ids.status()));
  response->mutable_ids()->Add(ids->begin(), ids->end());
  return FinishNow(context, "Tokenize", grpc::Status::OK);
}

grpc::ServerUnaryReactor* GenerationService::Detokenize(
    grpc::CallbackServerContext* context, const v1::DetokenizeRequest* request,
    v1::DetokenizeResponse* response) {
  grpc::Status why;
  const ServingBackend* b = Backend(context, &why);
  if (b == nullptr) return FinishNow(context, "Detokenize", why);
  const int32_t vocab = b->tokenizer->vocab_size();
  // Bounded: 4 MiB of ids could otherwise become hundreds of MB of text.
  if (request->ids_size() > kMaxDetokenizeIds) {
    return FinishNow(
        context, "Detokenize",
        grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("ids: ", request->ids_size(), " ids; at most ",
                         kMaxDetokenizeIds, " per call")));
  }
  StreamingDetokenizer detok(
      b->tokenizer,
      /*render_special=*/!request->skip_special_tokens());
  std::string text;
  for (int i = 0; i < request->ids_size(); ++i) {
    const int32_t id = request->ids(i);
    if (id < 0 || id >= vocab) {
      return FinishNow(
          context, "Detokenize",
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       absl::StrCat("ids[", i, "]: ", id, " is outside [0, ",
                                    vocab, ")")));
    }
    absl::StatusOr<std::string> piece = detok.Push(id);
    if (!piece.ok())
      return FinishNow(context, "Detokenize", ToGrpcStatus(piece.status()));
    text += *piece;
  }
  text += detok.Flush();
  response->set_text(std::move(text));
  return FinishNow(context, "Detokenize", grpc::Status::OK);
}

grpc::ServerUnaryReactor* GenerationService::GetModelInfo(
    grpc::CallbackServerContext* context, const v1::GetModelInfoRequest*,
    v1::ModelInfo* response) {
  grpc::Status why;
  const ServingBackend* b = Backend(context, &why);
  if (b == nullptr) return FinishNow(context, "GetModelInfo", why);
  *response = b->info;
  return FinishNow(context, "GetModelInfo", grpc::Status::OK);
}

grpc::ServerUnaryReactor* GenerationService::Abort(
    grpc::CallbackServerContext* context, const v1::AbortRequest* request,
    v1::AbortResponse* response) {
  grpc::Status why;
  const ServingBackend* b = Backend(context, &why);
  if (b == nullptr) return FinishNow(context, "Abort", why);
  // Only ids that clients chose can be aborted by id: a server-assigned id
  // belongs to an anonymous call, which only its own client stops (by
  // cancelling it). Checked first: nothing is aborted by a refused call.
  for (int i = 0; i < request->request_ids_size(); ++i) {
    if (IsServerRequestId(request->request_ids(i))) {
      return FinishNow(
          context, "Abort",
          grpc::Status(
              grpc::StatusCode::INVALID_ARGUMENT,
              absl::StrCat("request_ids[", i, "] '", request->request_ids(i),
                           "' was assigned by the server: such a request can "
                           "only be stopped by cancelling its call")));
    }
  }
  for (const std::string& id : request->request_ids()) {
    if (b->engine->Abort(id)) response->add_aborted(id);
  }
  return FinishNow(context, "Abort", grpc::Status::OK);
}

}  // namespace spikeserve
