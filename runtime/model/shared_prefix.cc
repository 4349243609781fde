#include "runtime/model/shared_prefix.h"

namespace spikeserve {

absl::StatusOr<std::unique_ptr<SharedPrefix>> SharedPrefix::Compute(
    const Model& model, KvPool* pool, std::vector<int32_t> tokens) {
  if (tokens.empty()) {
    return absl::InvalidArgumentError("shared prefix: no tokens");
  }
  auto prefix =
      std::unique_ptr<SharedPrefix>(new SharedPrefix(pool, std::move(tokens)));
  SequenceKv seq(pool);
  std::vector<float> logits;
  ForwardOptions fp32;
  fp32.all_fp32 = true;
  if (absl::Status s =
          model.Forward({{&seq, prefix->tokens_, false}}, &logits, fp32);
      !s.ok()) {
    return s;
  }
  for (int b : seq.own_blocks()) {
    pool->Ref(b);  // our pin; `seq` drops its own reference below
    prefix->blocks_.push_back(b);
  }
  return prefix;
}

SharedPrefix::~SharedPrefix() {
  for (int b : blocks_) pool_->Unref(b);
}

absl::Status SharedPrefix::AttachTo(SequenceKv* seq) const {
  return seq->AttachPrefix(blocks_, length());
}

}  // namespace spikeserve
