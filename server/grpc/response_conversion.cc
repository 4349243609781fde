#include "server/grpc/response_conversion.h"

namespace spikeserve {

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kUnspecified:
      return v1::FINISH_REASON_UNSPECIFIED;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kEosToken:
      return v1::FINISH_REASON_EOS_TOKEN;
    case FinishReason::kStopSequence:
      return v1::FINISH_REASON_STOP_SEQUENCE;
    case FinishReason::kAborted:
      return v1::FINISH_REASON_ABORTED;
    case FinishReason::kDeadline:
      return v1::FINISH_REASON_DEADLINE;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void AppendUpdate(const GenerationUpdate& u, v1::GenerateResponse* r) {
  r->mutable_text()->append(u.text);
  for (const GeneratedToken& t : u.tokens) {
    v1::Token* out = r->add_tokens();
    out->set_id(t.id);
    out->set_logprob(t.logprob);
    for (const SampledToken& alt : t.top) {
      v1::TopToken* top = out->add_top();
      top->set_id(alt.id);
      top->set_logprob(alt.logprob);
    }
  }
  if (!u.finished) return;
  r->set_finish_reason(ToProto(u.finish_reason));
  v1::Usage* usage = r->mutable_usage();
  usage->set_prompt_tokens(uint32_t(u.prompt_tokens));
  usage->set_completion_tokens(uint32_t(u.completion_tokens));
  usage->set_cached_tokens(uint32_t(u.cached_tokens));
  v1::Timings* timings = r->mutable_timings();
  timings->set_queue_seconds(u.queue_seconds);
  timings->set_time_to_first_token_seconds(u.ttft_seconds);
  timings->set_total_seconds(u.total_seconds);
}

void SetToolCalls(ToolCallSyntax syntax, absl::string_view request_id,
                  absl::string_view answer, v1::GenerateResponse* response) {
  if (syntax == ToolCallSyntax::kNone) return;
  ToolCallAnswer parsed = ParseToolCalls(syntax, answer);
  if (parsed.calls.empty()) return;
  for (size_t i = 0; i < parsed.calls.size(); ++i) {
    v1::ToolCall* call = response->add_tool_calls();
    call->set_id(ToolCallId(syntax, request_id, int(i)));
    call->set_name(std::move(parsed.calls[i].name));
    call->set_arguments_json(std::move(parsed.calls[i].arguments));
  }
  response->set_content(std::move(parsed.content));
}

}  // namespace spikeserve
