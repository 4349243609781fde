// Integration tests: a real gRPC server on 127.0.0.1 driven by the C++
// client (the Python client test drives the spikeserve binary).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model/model_config.h"
#include "runtime/quant/quant_plan.h"
#include "runtime/quant/w4_weights_file.h"
#include "tests/fixtures/gguf_builder.h"
#include "tests/server/server_fixture.h"

namespace spikeserve::testing {
namespace {

using ::grpc::StatusCode;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<int32_t> Ids(const v1::GenerateResponse& r) {
  std::vector<int32_t> ids;
  for (const v1::Token& t : r.tokens()) ids.push_back(t.id());
  return ids;
}

std::vector<int32_t> RandomPrompt(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p(n);
  for (auto& t : p) t = int32_t(32 + rng() % 90);  // printable bytes
  return p;
}

TEST_F(ServerTest, UnaryGenerateMatchesTokenizerAndReportsUsage) {
  StartServer(DefaultOptions());
  v1::GenerateRequest req;
  req.set_text("hello world");
  req.mutable_stopping()->set_max_new_tokens(12);
  req.mutable_stopping()->set_ignore_eos(true);
  v1::GenerateResponse r;
  ASSERT_TRUE(Generate(req, &r).ok());
  EXPECT_EQ(r.tokens_size(), 12);
  EXPECT_EQ(r.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(r.usage().prompt_tokens(), 11u);  // byte-level: one per byte
  EXPECT_EQ(r.usage().completion_tokens(), 12u);
  EXPECT_FALSE(r.request_id().empty());
  EXPECT_GT(r.timings().total_seconds(), 0);
  EXPECT_LE(r.timings().time_to_first_token_seconds(),
            r.timings().total_seconds());
  // The text is the detokenization of the returned ids.
  grpc::ClientContext ctx;
  v1::DetokenizeRequest dreq;
  for (int32_t id : Ids(r)) dreq.add_ids(id);
  dreq.set_skip_special_tokens(true);
  v1::DetokenizeResponse dresp;
  ASSERT_TRUE(stub_->Detokenize(&ctx, dreq, &dresp).ok());
  EXPECT_EQ(r.text(), dresp.text());
  // Bounded: 2^18 ids per call.
  grpc::ClientContext big_ctx;
  v1::DetokenizeRequest big;
  for (int i = 0; i < (1 << 18) + 1; ++i) big.add_ids(0);
  const grpc::Status s = stub_->Detokenize(&big_ctx, big, &dresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("at most 262144"));
}

TEST_F(ServerTest, StreamDeliversTheSameTokensAsUnary) {
  StartServer(DefaultOptions());
  const v1::GenerateRequest req = TokenRequest(RandomPrompt(20, 1), 24);
  v1::GenerateResponse unary;
  ASSERT_TRUE(Generate(req, &unary).ok());
  std::vector<v1::GenerateResponse> msgs;
  ASSERT_TRUE(Stream(req, &msgs).ok());
  ASSERT_GE(msgs.size(), 2u);
  std::string text;
  std::vector<int32_t> ids;
  for (size_t i = 0; i < msgs.size(); ++i) {
    text += msgs[i].text();
    for (int32_t id : Ids(msgs[i])) ids.push_back(id);
    const bool last = i + 1 == msgs.size();
    EXPECT_EQ(msgs[i].finish_reason() != v1::FINISH_REASON_UNSPECIFIED, last);
    EXPECT_EQ(msgs[i].has_usage(), last);
  }
  EXPECT_EQ(ids, Ids(unary));
  EXPECT_EQ(text, unary.text());
  EXPECT_EQ(msgs.back().usage().completion_tokens(), 24u);
}

TEST_F(ServerTest, SeedsReproduceAndDiffer) {
  StartServer(DefaultOptions());
  auto sampled = [&](uint64_t seed) {
    v1::GenerateRequest req = TokenRequest(RandomPrompt(8, 2), 32);
    req.mutable_sampling()->set_temperature(25.0f);  // near-uniform
    req.mutable_sampling()->set_seed(seed);
    v1::GenerateResponse r;
    EXPECT_TRUE(Generate(req, &r).ok());
    return Ids(r);
  };
  const std::vector<int32_t> a = sampled(7);
  EXPECT_EQ(sampled(7), a);
  EXPECT_NE(sampled(8), a);
}

TEST_F(ServerTest, LogprobsAreNormalizedAndRanked) {
  StartServer(DefaultOptions());
  v1::GenerateRequest req = TokenRequest(RandomPrompt(8, 3), 10);
  req.set_top_n_tokens(5);
  v1::GenerateResponse r;
  ASSERT_TRUE(Generate(req, &r).ok());
  for (const v1::Token& t : r.tokens()) {
    ASSERT_EQ(t.top_size(), 5);
    // Greedy: the chosen token is the most likely one.
    EXPECT_EQ(t.top(0).id(), t.id());
    EXPECT_FLOAT_EQ(t.top(0).logprob(), t.logprob());
    double mass = 0;
    for (int i = 0; i < 5; ++i) {
      EXPECT_LE(t.top(i).logprob(), 0.0f);
      if (i > 0) {
        EXPECT_LE(t.top(i).logprob(), t.top(i - 1).logprob());
      }
      mass += std::exp(t.top(i).logprob());
    }
    EXPECT_LE(mass, 1.0 + 1e-4);
  }
}

TEST_F(ServerTest, StopSequenceCutsTheTextAndStopTokenEndsIt) {
  StartServer(DefaultOptions());
  const v1::GenerateRequest base = TokenRequest(RandomPrompt(10, 4), 40);
  v1::GenerateResponse full;
  ASSERT_TRUE(Generate(base, &full).ok());
  const std::string& t = full.text();
  ASSERT_GE(t.size(), 8u);
  // A stop string taken from the middle of the greedy text (ASCII here:
  // the tiny vocabulary renders bytes < 0x80 and "<fillerN>" tokens).
  size_t at = t.size() / 2;
  while (at < t.size() && (uint8_t(t[at]) & 0xC0) == 0x80) ++at;
  const std::string stop = t.substr(at, 2);
  v1::GenerateRequest req = base;
  req.mutable_stopping()->add_stop_sequences(stop);
  v1::GenerateResponse r;
  ASSERT_TRUE(Generate(req, &r).ok());
  EXPECT_EQ(r.finish_reason(), v1::FINISH_REASON_STOP_SEQUENCE);
  EXPECT_EQ(r.text(), t.substr(0, t.find(stop)));

  // A stop token id: generation ends at its first occurrence, included.
  const int32_t stop_id = full.tokens(5).id();
  v1::GenerateRequest req2 = base;
  req2.mutable_stopping()->add_stop_token_ids(stop_id);
  v1::GenerateResponse r2;
  ASSERT_TRUE(Generate(req2, &r2).ok());
  EXPECT_EQ(r2.finish_reason(), v1::FINISH_REASON_EOS_TOKEN);
  const std::vector<int32_t> all = Ids(full);
  const size_t first = std::find(all.begin(), all.end(), stop_id) - all.begin();
  EXPECT_EQ(Ids(r2),
            std::vector<int32_t>(all.begin(), all.begin() + first + 1));
}

TEST_F(ServerTest, MaxNewTokensZeroUsesTheServerDefault) {
  ServerOptions o = DefaultOptions();
  o.limits.default_max_new_tokens = 7;
  StartServer(o);
  v1::GenerateResponse r;
  ASSERT_TRUE(Generate(TokenRequest(RandomPrompt(5, 5), 0), &r).ok());
  EXPECT_EQ(r.tokens_size(), 7);
  EXPECT_EQ(r.finish_reason(), v1::FINISH_REASON_LENGTH);
}

TEST_F(ServerTest, TokenizeRoundTrip) {
  StartServer(DefaultOptions());
  for (const std::string text :
       {"hello world", "h\xC3\xA9llo w\xC3\xB6rld", "a <|eos|> b", ""}) {
    grpc::ClientContext c1, c2;
    v1::TokenizeRequest treq;
    treq.set_text(text);
    v1::TokenizeResponse tresp;
    ASSERT_TRUE(stub_->Tokenize(&c1, treq, &tresp).ok());
    v1::DetokenizeRequest dreq;
    *dreq.mutable_ids() = tresp.ids();
    v1::DetokenizeResponse dresp;
    ASSERT_TRUE(stub_->Detokenize(&c2, dreq, &dresp).ok());
    EXPECT_EQ(dresp.text(), text);
  }
  // With add_special_tokens, "<|eos|>" is the control token.
  grpc::ClientContext c3;
  v1::TokenizeRequest treq;
  treq.set_text("<|eos|>");
  treq.set_add_special_tokens(true);
  v1::TokenizeResponse tresp;
  ASSERT_TRUE(stub_->Tokenize(&c3, treq, &tresp).ok());
  EXPECT_THAT(tresp.ids(), ::testing::Contains(299));
}

TEST_F(ServerTest, ModelInfoDescribesModelAndPlan) {
  StartServer(DefaultOptions());
  grpc::ClientContext ctx;
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&ctx, {}, &info).ok());
  EXPECT_EQ(info.architecture(), "llama");
  EXPECT_EQ(info.layers(), 2);
  EXPECT_EQ(info.hidden(), 128);
  EXPECT_EQ(info.vocab_size(), 300);
  const auto& files = GetTinyModelFiles();
  EXPECT_EQ(info.context_length(), files.context - int(files.prefix.size()));
  EXPECT_EQ(std::vector<int32_t>(info.qfep_prefix_ids().begin(),
                                 info.qfep_prefix_ids().end()),
            files.prefix);
  EXPECT_EQ(info.quant().activation_mode(), "per-tensor-dynamic");
  EXPECT_THAT(info.quant().int8_impl(), HasSubstr(ExpectedInt8Kernel()));
  EXPECT_FALSE(info.quant().norm_rotation());  // the fixture's plan has none
}

// A plan's rotations (down_proj's input, the norm outputs) are served and
// reported in GetModelInfo, each as the plan says.
// Serves a plan (written to a temporary file) and answers GetModelInfo.
class PlanServerTest : public ServerTest {
 protected:
  v1::ModelInfo ServePlan(const v1::QuantPlan& plan, const std::string& name) {
    const std::string path = ::testing::TempDir() + "/" + name + ".json";
    EXPECT_TRUE(WriteQuantPlan(plan, path).ok());
    ServerOptions o = DefaultOptions();
    o.plan_path = path;
    StartServer(o);
    grpc::ClientContext ctx;
    v1::ModelInfo info;
    EXPECT_TRUE(stub_->GetModelInfo(&ctx, {}, &info).ok());
    return info;
  }
  // Lists every site of the first `layers` layers in `plan` (a plan with
  // W4 sites lists them all), static absmax 3; returns them by
  // "LAYER.SITE".
  static std::map<std::string, v1::SiteStats*> ListSites(v1::QuantPlan* plan,
                                                         int layers) {
    std::map<std::string, v1::SiteStats*> sites;
    for (int l = 0; l < layers; ++l) {
      for (const char* name : {"qkv", "o", "gate_up", "down"}) {
        v1::SiteStats* s = plan->add_sites();
        s->set_layer(l);
        s->set_site(name);
        s->set_static_absmax(3.0);
        sites[absl::StrCat(l, ".", name)] = s;
      }
    }
    return sites;
  }
};

TEST_F(PlanServerTest, ModelInfoReportsThePlansRotations) {
  absl::StatusOr<v1::QuantPlan> plan = ReadQuantPlan(GetTinyModelFiles().plan);
  ASSERT_TRUE(plan.ok()) << plan.status();
  plan->mutable_rotation()->set_down_hadamard(false);
  plan->mutable_rotation()->set_norm_hadamard(true);
  const v1::ModelInfo info = ServePlan(*plan, "norm-rotation-plan");
  EXPECT_FALSE(info.quant().rotation());
  EXPECT_TRUE(info.quant().norm_rotation());
  v1::GenerateRequest req;
  req.set_text("hello world");
  req.mutable_stopping()->set_max_new_tokens(4);
  req.mutable_stopping()->set_ignore_eos(true);
  v1::GenerateResponse r;
  ASSERT_TRUE(Generate(req, &r).ok());
  EXPECT_EQ(r.tokens_size(), 4);
}

// A plan's W4A8 sites with and without weight_importance: GetModelInfo
// says which groups were chosen with it, in the order of w4_modules.
TEST_F(PlanServerTest, ModelInfoReportsImportanceWeightedW4Sites) {
  absl::StatusOr<v1::QuantPlan> plan = ReadQuantPlan(GetTinyModelFiles().plan);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // Every site listed (a plan with W4 sites lists them all); 0.qkv and
  // 0.gate_up in W4A8, the first with an importance per input channel.
  const std::vector<std::string> w4 = {"0.qkv", "0.gate_up"};
  std::map<std::string, v1::SiteStats*> sites = ListSites(&*plan, 2);
  for (const std::string& key : w4) {
    sites[key]->set_weight_bits(4);
    sites[key]->set_weight_group(32);
  }
  for (int j = 0; j < 128; ++j) {
    sites[w4[0]]->add_weight_importance(1.0f + j % 5);
  }
  const v1::ModelInfo info = ServePlan(*plan, "importance-plan");
  ASSERT_EQ(info.quant().w4_modules_size(), int(w4.size()));
  ASSERT_EQ(info.quant().w4_importance_weighted_size(), int(w4.size()));
  for (size_t i = 0; i < w4.size(); ++i) {
    EXPECT_EQ(info.quant().w4_modules(i), w4[i]);
    EXPECT_EQ(info.quant().w4_importance_weighted(i), i == 0) << w4[i];
  }
}

// A plan whose W4A8 site reads its weights from the plan's w4_weights file
// (GPTQ) serves them, and GetModelInfo says which modules did.
TEST_F(PlanServerTest, ModelInfoReportsW4SitesFromTheWeightsFile) {
  absl::StatusOr<v1::QuantPlan> plan = ReadQuantPlan(GetTinyModelFiles().plan);
  ASSERT_TRUE(plan.ok()) << plan.status();
  absl::StatusOr<std::unique_ptr<GgufFile>> file =
      GgufFile::Open(GetTinyModelFiles().model);
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<ModelConfig> c = ReadModelConfig(**file);
  ASSERT_TRUE(c.ok()) << c.status();
  // 0.gate_up from the file (any codes serve), 1.o re-quantized.
  W4Plain given{2 * c->ffn, c->hidden, 32, false};
  given.u.assign(size_t(given.n) * given.k, 9);
  given.scale.assign(size_t(given.n) * given.groups(), 0x2000);  // 2^-7
  const std::string weights = ::testing::TempDir() + "/from-file.w4.gguf";
  ASSERT_TRUE(WriteW4WeightsFile(weights, plan->model().hash(),
                                 {{{0, Site::kGateUp}, given}})
                  .ok());
  plan->set_w4_weights(weights);
  std::map<std::string, v1::SiteStats*> sites = ListSites(&*plan, c->n_layers);
  for (const char* key : {"0.gate_up", "1.o"}) {
    sites[key]->set_weight_bits(4);
    sites[key]->set_weight_group(32);
  }
  sites["0.gate_up"]->set_weight_from_file(true);
  const v1::ModelInfo info = ServePlan(*plan, "from-file-plan");
  ASSERT_EQ(info.quant().w4_modules_size(), 2);
  ASSERT_EQ(info.quant().w4_from_file_size(), 2);
  EXPECT_EQ(info.quant().w4_modules(0), "0.gate_up");
  EXPECT_TRUE(info.quant().w4_from_file(0));
  EXPECT_EQ(info.quant().w4_modules(1), "1.o");
  EXPECT_FALSE(info.quant().w4_from_file(1));
}

// Acceptance 2: invalid requests get INVALID_ARGUMENT naming the field,
// and the server keeps serving.
TEST_F(ServerTest, InvalidRequestsNameTheField) {
  StartServer(DefaultOptions());
  const int ctx = GetTinyModelFiles().context - 3;
  using Mutate = std::function<void(v1::GenerateRequest*)>;
  const std::vector<std::pair<Mutate, std::string>> cases = {
      {[](auto* r) { r->clear_input(); }, "input"},
      {[](auto* r) { r->set_text(""); }, "input.text"},
      {[](auto* r) { r->mutable_tokens()->clear_ids(); }, "input.tokens.ids"},
      {[](auto* r) { r->mutable_tokens()->set_ids(0, 300); },
       "input.tokens.ids[0]"},
      {[](auto* r) { r->mutable_tokens()->set_ids(1, -1); },
       "input.tokens.ids[1]"},
      {[](auto* r) { r->mutable_sampling()->set_temperature(-0.5f); },
       "sampling.temperature"},
      {[](auto* r) { r->mutable_sampling()->set_temperature(NAN); },
       "sampling.temperature"},
      {[](auto* r) { r->mutable_sampling()->set_top_p(1.5f); },
       "sampling.top_p"},
      {[](auto* r) { r->mutable_sampling()->set_top_p(-0.1f); },
       "sampling.top_p"},
      {[](auto* r) { r->mutable_sampling()->set_top_k(-1); }, "sampling.top_k"},
      {[](auto* r) { r->mutable_sampling()->set_min_p(1.0f); },
       "sampling.min_p"},
      {[](auto* r) { r->mutable_sampling()->set_repetition_penalty(-1.f); },
       "sampling.repetition_penalty"},
      {[](auto* r) { r->mutable_sampling()->set_presence_penalty(3.f); },
       "sampling.presence_penalty"},
      {[](auto* r) { r->mutable_sampling()->set_frequency_penalty(INFINITY); },
       "sampling.frequency_penalty"},
      {[ctx](auto* r) { r->mutable_stopping()->set_max_new_tokens(ctx + 1); },
       "stopping.max_new_tokens"},
      {[ctx](auto* r) {
         r->mutable_tokens()->mutable_ids()->Resize(ctx + 1, 65);
       },
       "input"},
      {[](auto* r) { r->mutable_stopping()->add_stop_sequences(""); },
       "stopping.stop_sequences[0]"},
      {[](auto* r) {
         for (int i = 0; i < 17; ++i) {
           r->mutable_stopping()->add_stop_sequences("x");
         }
       },
       "stopping.stop_sequences"},
      {[](auto* r) { r->mutable_stopping()->add_stop_token_ids(300); },
       "stopping.stop_token_ids[0]"},
      {[](auto* r) { r->set_top_n_tokens(21); }, "top_n_tokens"},
      {[](auto* r) { r->set_request_id(std::string(129, 'a')); }, "request_id"},
      {[](auto* r) { r->set_request_id("has space"); }, "request_id"},
  };
  for (const auto& [mutate, field] : cases) {
    v1::GenerateRequest req = TokenRequest({65, 66, 67}, 4);
    mutate(&req);
    v1::GenerateResponse r;
    const grpc::Status s = Generate(req, &r);
    EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT)
        << field << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(field));
    // Streaming validates the same way.
    std::vector<v1::GenerateResponse> msgs;
    EXPECT_EQ(Stream(req, &msgs).error_code(), StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(msgs.empty());
  }
  // Invalid UTF-8 in a string field is refused by protobuf's proto3 parser
  // before our validation runs (request_validation_test checks our own
  // message for it); the call fails and nothing is generated.
  {
    v1::GenerateRequest req = TokenRequest({65, 66, 67}, 4);
    req.mutable_stopping()->add_stop_sequences("\xC3(");
    v1::GenerateResponse r;
    EXPECT_FALSE(Generate(req, &r).ok());
  }
  // Duplicate request id: the first is held in flight by the gate.
  gate_.Hold();
  v1::GenerateRequest first = TokenRequest({65, 66}, 50);
  first.set_request_id("dup-1");
  grpc::ClientContext first_ctx;
  auto reader = stub_->GenerateStream(&first_ctx, first);
  gate_.WaitPauses(1);
  v1::GenerateResponse m;
  v1::GenerateResponse r;
  const grpc::Status dup = Generate(first, &r);
  EXPECT_EQ(dup.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(dup.error_message(), HasSubstr("request_id"));
  gate_.Open();
  while (reader->Read(&m)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
  // Still serving.
  ASSERT_TRUE(Generate(TokenRequest({65, 66, 67}, 4), &r).ok());
  EXPECT_EQ(r.tokens_size(), 4);
}

// Acceptance 3: one copy of the QFeP prefix for 16 concurrent sessions.
TEST_F(ServerTest, QfepPrefixIsSharedBySixteenSessions) {
  ServerOptions o = DefaultOptions();
  o.engine.max_running = 16;
  StartServer(o);
  const EngineStats idle = IdleStats();
  ASSERT_FALSE(idle.prefix_blocks.empty());
  EXPECT_EQ(idle.prefix_block_refs,
            std::vector<int>(idle.prefix_blocks.size(), 1));

  // A blocker holds the engine inside a step while 16 sessions queue up;
  // then it is aborted and the next step admits all 16 at once.
  gate_.Hold();
  grpc::ClientContext blocker_ctx;
  v1::GenerateRequest blocker = TokenRequest({65}, 50);
  blocker.set_request_id("blocker");
  auto blocker_reader = stub_->GenerateStream(&blocker_ctx, blocker);
  gate_.WaitPauses(1);
  struct Session {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
  };
  std::vector<Session> sessions(16);
  for (int i = 0; i < 16; ++i) {
    v1::GenerateRequest req = TokenRequest(RandomPrompt(10, 100 + i), 200);
    req.set_request_id(absl::StrCat("session-", i));
    sessions[i].reader = stub_->GenerateStream(&sessions[i].ctx, req);
  }
  WaitForWaiting(16);
  ASSERT_TRUE(server_->engine()->Abort("blocker"));
  gate_.ReleaseOnce();
  gate_.WaitPauses(2);  // paused inside the step that runs all 16
  const EngineStats busy = server_->engine()->Stats();
  EXPECT_EQ(busy.running, 16);
  EXPECT_EQ(busy.prefix_blocks, idle.prefix_blocks);
  // One copy: the pin plus one reference per session, no other blocks.
  EXPECT_EQ(busy.prefix_block_refs,
            std::vector<int>(idle.prefix_blocks.size(), 1 + 16));

  // Abort by id ends every stream with ABORTED and frees their blocks.
  grpc::ClientContext actx;
  v1::AbortRequest areq;
  for (int i = 0; i < 16; ++i) {
    areq.add_request_ids(absl::StrCat("session-", i));
  }
  areq.add_request_ids("no-such-request");
  v1::AbortResponse aresp;
  ASSERT_TRUE(stub_->Abort(&actx, areq, &aresp).ok());
  EXPECT_EQ(aresp.aborted_size(), 16);
  gate_.Open();
  v1::GenerateResponse m;
  for (auto& s : sessions) {
    v1::GenerateResponse last;
    while (s.reader->Read(&m)) last = m;
    EXPECT_TRUE(s.reader->Finish().ok());
    EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_ABORTED);
  }
  while (blocker_reader->Read(&m)) {
  }
  EXPECT_TRUE(blocker_reader->Finish().ok());
  const EngineStats after = IdleStats();
  EXPECT_EQ(after.kv_blocks_used - after.kv_blocks_cached,
            idle.kv_blocks_used - idle.kv_blocks_cached);
  EXPECT_EQ(after.prefix_block_refs, idle.prefix_block_refs);
}

// Acceptance 3: a 256-token prompt prefix is reused by the next request.
TEST_F(ServerTest, SharedPromptPrefixIsCached) {
  StartServer(DefaultOptions());
  const std::vector<int32_t> shared = RandomPrompt(256, 9);
  std::vector<int32_t> a = shared, b = shared;
  a.push_back(70);
  b.insert(b.end(), {71, 72, 73});
  v1::GenerateResponse ra, rb;
  ASSERT_TRUE(Generate(TokenRequest(a, 4), &ra).ok());
  ASSERT_TRUE(Generate(TokenRequest(b, 4), &rb).ok());
  EXPECT_EQ(ra.usage().cached_tokens(), 0u);
  EXPECT_GE(rb.usage().cached_tokens(), 240u);
  EXPECT_EQ(rb.usage().prompt_tokens(), 259u);
  // Reusing the cache changes nothing in the output.
  ServerOptions no_cache = DefaultOptions();
  no_cache.engine.prefix_caching = false;
  auto fresh = SpikeServer::Start(no_cache);
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE((*fresh)->Load().ok());
  auto stub = v1::Generation::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*fresh)->port()),
                          grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::GenerateResponse rc;
  ASSERT_TRUE(stub->Generate(&ctx, TokenRequest(b, 4), &rc).ok());
  EXPECT_EQ(rc.usage().cached_tokens(), 0u);
  EXPECT_EQ(Ids(rc), Ids(rb));
  (*fresh)->Drain(absl::Seconds(5));
}

// Acceptance 4: cancellation and deadlines free every block.
TEST_F(ServerTest, CancelAndDeadlineFreeTheSequenceBlocks) {
  StartServer(DefaultOptions());
  const int idle = IdleStats().kv_blocks_used;
  {
    gate_.Hold();
    grpc::ClientContext ctx;
    auto reader = stub_->GenerateStream(&ctx, TokenRequest({65, 66, 67}, 500));
    gate_.WaitPauses(1);
    EXPECT_GT(server_->engine()->Stats().kv_blocks_used, idle);
    ctx.TryCancel();
    gate_.Open();
    v1::GenerateResponse m;
    while (reader->Read(&m)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), StatusCode::CANCELLED);
  }
  EXPECT_EQ(IdleStats().kv_blocks_used, idle);
  {
    // The engine holds the request (its blocks taken) while its 2 s
    // deadline passes; the 1st pause was the cancelled stream's.
    gate_.Hold();
    grpc::Status s;
    std::thread call([&] {
      v1::GenerateResponse r;
      s = Generate(TokenRequest({65, 66, 67}, 500), &r, 2000);
    });
    gate_.WaitPauses(2);
    EXPECT_GT(server_->engine()->Stats().kv_blocks_used, idle);
    call.join();
    EXPECT_EQ(s.error_code(), StatusCode::DEADLINE_EXCEEDED);
    gate_.Open();
  }
  EXPECT_EQ(IdleStats().kv_blocks_used, idle);
}

// A deadline beyond the year 2262 (grpc-go's WithTimeout(MaxInt64), a
// common "no timeout") is as good as none: its nanoseconds since 1970
// overflowed int64, and the request ended at once with DEADLINE_EXCEEDED.
TEST_F(ServerTest, DeadlinesFarInTheFutureDoNotExpire) {
  StartServer(DefaultOptions());
  for (int64_t seconds : {int64_t(10000000000), int64_t(1) << 62}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(gpr_timespec{seconds, 0, GPR_CLOCK_REALTIME});
    v1::GenerateResponse r;
    const grpc::Status s =
        stub_->Generate(&ctx, TokenRequest({65, 66, 67}, 4), &r);
    EXPECT_TRUE(s.ok()) << seconds << ": " << s.error_message();
    EXPECT_EQ(r.usage().completion_tokens(), 4u) << seconds;
  }
}

// Acceptance 4: a full queue answers RESOURCE_EXHAUSTED at once while the
// running stream completes.
TEST_F(ServerTest, FullQueueIsRefusedWhileRunningStreamsComplete) {
  ServerOptions o = DefaultOptions();
  o.engine.max_running = 1;
  o.engine.max_waiting = 2;
  StartServer(o);
  gate_.Hold();
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>>> rs;
  for (int i = 0; i < 3; ++i) {
    ctxs.push_back(std::make_unique<grpc::ClientContext>());
    rs.push_back(stub_->GenerateStream(
        ctxs.back().get(), TokenRequest(RandomPrompt(6, 20 + i), 30)));
    if (i == 0) gate_.WaitPauses(1);  // running, held inside its first step
  }
  WaitForWaiting(2);
  v1::GenerateResponse r;
  const grpc::Status s = Generate(TokenRequest({65}, 2), &r);
  EXPECT_EQ(s.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("queue is full"));
  gate_.Open();
  for (int i = 0; i < 3; ++i) {
    v1::GenerateResponse m, last;
    int tokens = 0;
    while (rs[i]->Read(&m)) {
      tokens += m.tokens_size();
      last = m;
    }
    EXPECT_TRUE(rs[i]->Finish().ok());
    EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(tokens, 30);
  }
}

// Acceptance 5: greedy tokens do not depend on the batch.
TEST_F(ServerTest, BatchInvarianceAloneVersusConcurrent) {
  StartServer(DefaultOptions());
  std::vector<v1::GenerateRequest> reqs;
  for (int i = 0; i < 8; ++i) {
    reqs.push_back(TokenRequest(RandomPrompt(5 + 7 * i, 40 + i), 48));
  }
  std::vector<std::vector<int32_t>> alone(8), together(8);
  for (int i = 0; i < 8; ++i) {
    v1::GenerateResponse r;
    ASSERT_TRUE(Generate(reqs[i], &r).ok());
    alone[i] = Ids(r);
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      v1::GenerateResponse r;
      EXPECT_TRUE(Generate(reqs[i], &r).ok());
      together[i] = Ids(r);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) EXPECT_EQ(together[i], alone[i]) << i;
}

// Health: NOT_SERVING while loading, SERVING when ready, NOT_SERVING while
// draining; generation answers UNAVAILABLE in both NOT_SERVING phases.
TEST_F(ServerTest, HealthFollowsLoadingAndDraining) {
  StartServer(DefaultOptions(), /*load=*/false);
  EXPECT_EQ(Health(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health("spikeserve.v1.Generation"),
            HealthCheckResponse::NOT_SERVING);
  v1::GenerateResponse r;
  grpc::Status s = Generate(TokenRequest({65}, 2), &r);
  EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("loading"));

  ASSERT_TRUE(server_->Load().ok());
  EXPECT_EQ(Health(""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("spikeserve.v1.Generation"), HealthCheckResponse::SERVING);

  // A stream in flight (held by the gate) when the drain starts completes.
  gate_.Hold();
  grpc::ClientContext ctx;
  auto reader = stub_->GenerateStream(&ctx, TokenRequest({65, 66}, 30));
  gate_.WaitPauses(1);
  v1::GenerateResponse m;
  int aborted = -1;
  std::thread drain([&] { aborted = server_->Drain(absl::Seconds(60)); });
  // The drain flips health first; wait for it (bounded) through the API.
  HealthCheckResponse::ServingStatus h = HealthCheckResponse::SERVING;
  for (int i = 0; i < 10000 && h == HealthCheckResponse::SERVING; ++i) {
    h = Health("");
  }
  EXPECT_EQ(h, HealthCheckResponse::NOT_SERVING);
  s = Generate(TokenRequest({65}, 2), &r);
  EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("draining"));
  gate_.Open();
  v1::GenerateResponse last;
  while (reader->Read(&m)) last = m;
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
  drain.join();
  EXPECT_EQ(aborted, 0);
}

TEST_F(ServerTest, DrainTimeoutAbortsWhatIsLeft) {
  StartServer(DefaultOptions());
  gate_.Hold();
  grpc::ClientContext ctx;
  auto reader = stub_->GenerateStream(&ctx, TokenRequest({65, 66}, 1900));
  gate_.WaitPauses(1);
  std::atomic<int> aborted{-1};
  std::thread drain([&] { aborted = server_->Drain(absl::ZeroDuration()); });
  // Health flips first; the engine stop follows within microseconds, far
  // sooner than the 1900 steps the request still needs once released.
  while (Health("") == HealthCheckResponse::SERVING) {
  }
  gate_.Open();
  drain.join();
  EXPECT_EQ(aborted.load(), 1);
  v1::GenerateResponse m, last;
  while (reader->Read(&m)) last = m;
  reader->Finish();
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_ABORTED);
}

// Overload: a flood beyond the queue bound is refused with
// RESOURCE_EXHAUSTED at once while the admitted streams complete. The
// rejection latency is reported (RecordProperty), not asserted.
TEST_F(ServerTest, FloodBeyondTheQueueIsRefusedWhileAdmittedStreamsFinish) {
  ServerOptions o = DefaultOptions();
  o.engine.max_running = 2;
  o.engine.max_waiting = 5;
  StartServer(o);
  gate_.Hold();
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>>> rs;
  // One stream runs (held inside its first step); five queue, the queue's
  // bound (the second will run from the next step on).
  for (int i = 0; i < 6; ++i) {
    ctxs.push_back(std::make_unique<grpc::ClientContext>());
    rs.push_back(stub_->GenerateStream(
        ctxs.back().get(), TokenRequest(RandomPrompt(8, 60 + i), 20)));
    if (i == 0) gate_.WaitPauses(1);
  }
  WaitForWaiting(5);
  std::vector<double> latency_ms;
  std::mutex mu;
  std::atomic<int> exhausted{0}, other{0};
  std::vector<std::thread> flood;
  for (int t = 0; t < 8; ++t) {
    flood.emplace_back([&] {
      auto stub = v1::Generation::NewStub(channel_);
      for (int i = 0; i < 50; ++i) {
        grpc::ClientContext c;
        v1::GenerateResponse r;
        const auto t0 = std::chrono::steady_clock::now();
        const grpc::Status s =
            stub->Generate(&c, TokenRequest({65, 66}, 2), &r);
        const double ms = std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - t0)
                              .count();
        if (s.error_code() == StatusCode::RESOURCE_EXHAUSTED) {
          ++exhausted;
          std::lock_guard<std::mutex> lock(mu);
          latency_ms.push_back(ms);
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& t : flood) t.join();
  EXPECT_EQ(exhausted.load(), 400);
  EXPECT_EQ(other.load(), 0);
  std::sort(latency_ms.begin(), latency_ms.end());
  const double p50 = latency_ms[latency_ms.size() / 2];
  const double p99 = latency_ms[latency_ms.size() * 99 / 100];
  RecordProperty("rejection_p50_ms", std::to_string(p50));
  RecordProperty("rejection_p99_ms", std::to_string(p99));
  std::printf(
      "RESOURCE_EXHAUSTED latency over %zu calls: p50 %.3f ms, "
      "p99 %.3f ms\n",
      latency_ms.size(), p50, p99);
  gate_.Open();
  for (auto& r : rs) {
    v1::GenerateResponse m, last;
    int tokens = 0;
    while (r->Read(&m)) {
      tokens += m.tokens_size();
      last = m;
    }
    EXPECT_TRUE(r->Finish().ok());
    EXPECT_EQ(tokens, 20);
    EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
  }
}

TEST_F(ServerTest, OversizedRequestIsRefused) {
  ServerOptions o = DefaultOptions();
  o.max_request_bytes = 64 * 1024;
  StartServer(o);
  v1::GenerateRequest big;
  big.set_text(std::string(100 * 1024, 'a'));
  v1::GenerateResponse r;
  const grpc::Status s = Generate(big, &r);
  EXPECT_EQ(s.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("larger than max"));
  ASSERT_TRUE(Generate(TokenRequest({65, 66}, 2), &r).ok());  // still serving
}

// Issue 23 D7: the advertised context is what one request can use, to the
// last token, whatever limits it (the model's context after the QFeP
// prefix, or the KV pool after the prefix's blocks); validation and
// admission agree on it; an unset max_new_tokens shrinks to what fits.
TEST_F(ServerTest, AdvertisedContextIsServedToTheLastToken) {
  struct Case {
    const char* name;
    int kv_blocks;         // 16 tokens each; the 3-token prefix pins one
    int expected_context;  // what GetModelInfo must advertise
  };
  const Case cases[] = {
      {"pool limits", 96, 95 * 16},  // 1520 < 2048 - 3
      {"model limits", 512, 2048 - 3},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ServerOptions o = DefaultOptions();
    o.engine.kv_blocks = c.kv_blocks;
    o.limits.default_max_new_tokens = 256;
    StartServer(o);
    grpc::ClientContext ctx;
    v1::ModelInfo info;
    ASSERT_TRUE(stub_->GetModelInfo(&ctx, {}, &info).ok());
    const int n = int(info.context_length());
    EXPECT_EQ(n, c.expected_context);
    v1::GenerateResponse r;
    // The longest prompt with one new token.
    grpc::Status s = Generate(TokenRequest(RandomPrompt(n - 1, 1), 1), &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(r.usage().completion_tokens(), 1u);
    // Prompt + max_new_tokens exactly the context.
    r.Clear();
    s = Generate(TokenRequest(RandomPrompt(n - 40, 2), 40), &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(r.usage().completion_tokens(), 40u);
    // Unset max_new_tokens (default 256) shrinks to the 20 tokens left.
    r.Clear();
    s = Generate(TokenRequest(RandomPrompt(n - 20, 3), 0), &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(r.usage().completion_tokens(), 20u);
    // One more is refused by validation, naming the field and the range.
    r.Clear();
    s = Generate(TokenRequest(RandomPrompt(n - 40, 4), 41), &r);
    EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(
        s.error_message(),
        HasSubstr(absl::StrCat("stopping.max_new_tokens = 41 with a "
                               "prompt of ",
                               n - 40, " tokens exceeds the context of ", n,
                               " tokens (allowed 1..40)")));
    s = Generate(TokenRequest(RandomPrompt(n, 5), 1), &r);
    EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(),
                HasSubstr(absl::StrCat("input has ", n,
                                       " tokens; the context holds ", n)));
    TearDown();
  }
}

// Issue 23 D3: ids the server assigns are unguessable (128 random bits) and
// in a namespace clients cannot use: a client can neither take the next
// anonymous request's id nor abort another client's anonymous stream.
TEST_F(ServerTest, ServerAssignedIdsAreUnguessableAndNotAbortable) {
  StartServer(DefaultOptions());
  std::set<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    v1::GenerateResponse r;
    ASSERT_TRUE(Generate(TokenRequest({65, 66}, 1), &r).ok());
    EXPECT_THAT(r.request_id(),
                ::testing::MatchesRegex("spikeserve-[0-9a-f]{32}"));
    ids.insert(r.request_id());
  }
  EXPECT_EQ(ids.size(), 3u);
  // A client id in the server's namespace is refused, naming the field.
  v1::GenerateRequest squat = TokenRequest({65, 66}, 1);
  squat.set_request_id("spikeserve-1");
  v1::GenerateResponse r;
  grpc::Status s = Generate(squat, &r);
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("request_id"));
  // An anonymous stream in flight cannot be aborted by its id.
  gate_.Hold();
  grpc::ClientContext ctx;
  auto reader = stub_->GenerateStream(&ctx, TokenRequest({65, 66, 67}, 3));
  gate_.WaitPauses(1);
  gate_.ReleaseOnce();  // the prompt's step: the first token is sent
  v1::GenerateResponse first;
  ASSERT_TRUE(reader->Read(&first));
  grpc::ClientContext actx;
  v1::AbortRequest areq;
  areq.add_request_ids(first.request_id());
  v1::AbortResponse aresp;
  s = stub_->Abort(&actx, areq, &aresp);
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("request_ids[0]"));
  EXPECT_EQ(aresp.aborted_size(), 0);
  gate_.Open();
  v1::GenerateResponse m, last = first;
  while (reader->Read(&m)) last = m;
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
}

// Issue 23 D13: a QFeP prefix that leaves no room for a request fails the
// load at once, naming the plan field (or the pool flag), instead of
// computing the prefix and failing the warm-up request.
TEST_F(ServerTest, QfepPrefixWithoutRoomFailsTheLoadNamingTheField) {
  const std::string gguf = TinyLlama({.layers = 2,
                                      .hidden = 128,
                                      .heads = 4,
                                      .kv_heads = 2,
                                      .ffn = 256,
                                      .context = 2048})
                               .Build();
  struct Case {
    const char* name;
    int prefix_tokens;
    int kv_blocks;
    const char* expected;
  };
  const Case cases[] = {
      {"context", 2047, 512,
       "qfep.token_ids has 2047 tokens; the model's context of 2048 must "
       "keep at least 2 positions"},
      {"pool", 2030, 127, "--kv_blocks 127 leaves less than 2 positions"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const TinyModelFiles files =
        WriteModelAndPlan(gguf, absl::StrCat("long-prefix-", c.name),
                          std::vector<int32_t>(size_t(c.prefix_tokens), 65));
    ServerOptions o = DefaultOptions();
    o.model_path = files.model;
    o.plan_path = files.plan;
    o.engine.kv_blocks = c.kv_blocks;
    StartServer(o, /*load=*/false);
    const absl::Status s = server_->Load();
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.expected));
    EXPECT_THAT(std::string(s.message()), Not(HasSubstr("warm-up")));
    TearDown();
  }
}

TEST_F(ServerTest, TakenPortFailsClearly) {
  StartServer(DefaultOptions(), /*load=*/false);
  ServerOptions o = DefaultOptions();
  o.grpc_port = server_->port();
  auto second = SpikeServer::Start(o);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr(absl::StrCat(":", server_->port())));
}

// Without a plan the server serves W8A8 with per-token scales (--quant
// w8a8, the default) or FP32 (--quant fp32); a --quant beside a plan, or an
// unknown one, fails the load naming the flag.
TEST_F(ServerTest, QuantFlagChoosesThePrecisionWithoutAPlan) {
  struct Case {
    std::string quant;
    bool with_plan;
    std::string mode;   // activation_mode reported, "" = load fails
    std::string error;  // substring of the load error
  };
  for (const Case& c : std::vector<Case>{
           {"", false, "per-token-dynamic", ""},
           {"w8a8", false, "per-token-dynamic", ""},
           {"fp32", false, "fp32", ""},
           {"w4a8", false, "per-token-dynamic", ""},
           {"int4", false, "", "--quant must be w8a8, w4a8 or fp32"},
           {"fp32", true, "", "a plan carries its own quantization"}}) {
    SCOPED_TRACE("--quant '" + c.quant + "'" + (c.with_plan ? " + plan" : ""));
    ServerOptions o = DefaultOptions();
    o.quant = c.quant;
    if (!c.with_plan) o.plan_path.clear();
    StartServer(o, /*load=*/false);
    const absl::Status s = server_->Load();
    if (c.mode.empty()) {
      EXPECT_THAT(std::string(s.message()), HasSubstr(c.error));
    } else {
      ASSERT_TRUE(s.ok()) << s;
      grpc::ClientContext ctx;
      v1::ModelInfo info;
      ASSERT_TRUE(stub_->GetModelInfo(&ctx, {}, &info).ok());
      EXPECT_EQ(info.quant().activation_mode(), c.mode);
      // W4A8: every module 4-bit, with its group and the kernel named.
      const int w4 = c.quant == "w4a8" ? 4 * info.layers() : 0;
      EXPECT_EQ(info.quant().w4_modules_size(), w4);
      EXPECT_EQ(info.quant().w4_groups_size(), w4);
      EXPECT_EQ(info.quant().w4_with_min_size(), w4);
      if (w4 > 0) {
        EXPECT_EQ(info.quant().w4_modules(0), "0.qkv");
        EXPECT_FALSE(info.quant().w4_with_min(0));  // symmetric by default
        EXPECT_GT(info.quant().w4_groups(0), 0);
        EXPECT_FALSE(info.quant().w4_kernel().empty());
      }
    }
    TearDown();
  }
}

TEST_F(ServerTest, MalformedModelFailsLoadWithAMessage) {
  ServerOptions o = DefaultOptions();
  o.model_path = "/nonexistent/model.gguf";
  o.plan_path.clear();
  StartServer(o, /*load=*/false);
  const absl::Status s = server_->Load();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("/nonexistent/model.gguf"));
}

// A vocabulary that disagrees with the tokenizer's is named before the
// weights load (it was checked after, minutes into a large model's load,
// and only when the weights agreed with the wrong size).
TEST_F(ServerTest, AVocabularyTheTokenizerDisagreesWithFailsFirst) {
  GgufBuilder b = TinyLlama({});
  b.SetU32("llama.vocab_size", 299);  // the tokenizer has 300
  const std::string path = ::testing::TempDir() + "/vocab-299.gguf";
  ASSERT_TRUE(b.WriteFile(path));
  ServerOptions o = DefaultOptions();
  o.model_path = path;
  o.plan_path.clear();
  StartServer(o, /*load=*/false);
  const absl::Status s = server_->Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("tokenizer has 300 tokens but the model's vocabulary "
                        "is 299"));
}

// Chat: the model's template (or --chat_template) renders input.chat; the
// answer is the one for the rendered prompt's tokens.
TEST_F(ServerTest, ChatRendersTheModelsTemplate) {
  static const TinyModelFiles files = WriteModelAndPlan(
      TinyLlama({.chat_template =
                     "{% for m in messages %}<{{ m.role }}>{{ m.content }}"
                     "<|eos|>{% endfor %}{% if add_generation_prompt %}"
                     "<assistant>{% endif %}"})
          .Build(),
      "chat-model", GetTinyModelFiles().prefix);
  ServerOptions o = DefaultOptions();
  o.model_path = files.model;
  o.plan_path = files.plan;
  StartServer(o);
  v1::ModelInfo info;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->GetModelInfo(&ctx, {}, &info).ok());
  }
  EXPECT_TRUE(info.has_chat_template());

  v1::GenerateRequest chat = TokenRequest({}, 6);
  v1::ChatMessage* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("hi");
  v1::TokenizeRequest tr;
  tr.set_text("<user>hi<|eos|><assistant>");
  tr.set_add_special_tokens(true);  // parses <|eos|>
  v1::TokenizeResponse expected_prompt;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Tokenize(&ctx, tr, &expected_prompt).ok());
  }
  v1::GenerateRequest by_tokens = TokenRequest(
      {expected_prompt.ids().begin(), expected_prompt.ids().end()}, 6);
  v1::GenerateResponse a, b;
  ASSERT_TRUE(Generate(chat, &a).ok());
  ASSERT_TRUE(Generate(by_tokens, &b).ok());
  EXPECT_EQ(Ids(a), Ids(b));
  EXPECT_EQ(a.usage().prompt_tokens(), uint32_t(expected_prompt.ids_size()));
  std::vector<v1::GenerateResponse> streamed;
  ASSERT_TRUE(Stream(chat, &streamed).ok());
  std::string text;
  for (const auto& r : streamed) text += r.text();
  EXPECT_EQ(text, a.text());
}

// A chat with tools: the answer's calls come back parsed in the syntax the
// template teaches (hermes here), unary and on a stream's last message,
// while `text` stays the model's output. The model is made to write one
// call per token: a user-defined token holding a whole call, biased +100.
TEST_F(ServerTest, ChatWithToolsReturnsTheAnswersCalls) {
  const std::string call =
      "<tool_call>{\"name\": \"f\", \"arguments\": {\"n\": 1}}</tool_call>";
  TinyLlamaSpec spec{
      .chat_template =
          "{% for m in messages %}{{ m.content }}{% endfor %}"
          "{% if tools %}(answer in <tool_call> tags){% endif %}",
      .user_tokens = {call}};
  const int call_id = spec.vocab - 3;  // before <|bos|> and <|eos|>
  static const TinyModelFiles files = WriteModelAndPlan(
      TinyLlama(spec).Build(), "tools-model", GetTinyModelFiles().prefix);
  ServerOptions o = DefaultOptions();
  o.model_path = files.model;
  o.plan_path = files.plan;
  StartServer(o);
  v1::ModelInfo info;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->GetModelInfo(&ctx, {}, &info).ok());
  }
  EXPECT_EQ(info.tool_call_syntax(), "hermes");

  v1::GenerateRequest chat = TokenRequest({}, 2);
  v1::ChatMessage* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("hi");
  (*chat.mutable_sampling()->mutable_logit_bias())[call_id] = 100;
  chat.mutable_chat()->set_tools_json(
      R"([{"type": "function", "function": {"name": "f"}}])");
  v1::GenerateResponse unary;
  ASSERT_TRUE(Generate(chat, &unary).ok());
  EXPECT_EQ(unary.text(), call + call);
  ASSERT_EQ(unary.tool_calls_size(), 2);
  EXPECT_EQ(unary.content(), "");
  for (const v1::ToolCall& c : unary.tool_calls()) {
    EXPECT_EQ(c.name(), "f");
    EXPECT_EQ(c.arguments_json(), R"({"n":1})");
    EXPECT_THAT(c.id(), ::testing::StartsWith("call_"));
  }
  EXPECT_NE(unary.tool_calls(0).id(), unary.tool_calls(1).id());

  std::vector<v1::GenerateResponse> streamed;
  ASSERT_TRUE(Stream(chat, &streamed).ok());
  ASSERT_FALSE(streamed.empty());
  std::string text;
  for (size_t i = 0; i + 1 < streamed.size(); ++i) {
    EXPECT_EQ(streamed[i].tool_calls_size(), 0);
    text += streamed[i].text();
  }
  text += streamed.back().text();
  EXPECT_EQ(text, call + call);
  EXPECT_EQ(streamed.back().tool_calls_size(), 2);

  // Without tools the same answer is text only.
  chat.mutable_chat()->clear_tools_json();
  v1::GenerateResponse plain;
  ASSERT_TRUE(Generate(chat, &plain).ok());
  EXPECT_EQ(plain.text(), call + call);
  EXPECT_EQ(plain.tool_calls_size(), 0);
}

TEST_F(ServerTest, ChatWithoutATemplateIsAFailedPrecondition) {
  StartServer(DefaultOptions());
  v1::ModelInfo info;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->GetModelInfo(&ctx, {}, &info).ok());
  }
  EXPECT_FALSE(info.has_chat_template());
  v1::GenerateRequest chat = TokenRequest({}, 2);
  v1::ChatMessage* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("hi");
  v1::GenerateResponse r;
  const grpc::Status s = Generate(chat, &r);
  EXPECT_EQ(s.error_code(), StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("--chat_template"));
}

TEST_F(ServerTest, ChatTemplateFlagOverridesAndMustParse) {
  const std::string good = ::testing::TempDir() + "/chat-good.jinja";
  const std::string bad = ::testing::TempDir() + "/chat-bad.jinja";
  std::FILE* f = std::fopen(good.c_str(), "w");
  std::fputs("{% for m in messages %}{{ m.content }}{% endfor %}", f);
  std::fclose(f);
  f = std::fopen(bad.c_str(), "w");
  std::fputs("hello\n{% if messages %}never closed", f);
  std::fclose(f);

  ServerOptions o = DefaultOptions();
  o.chat_template_path = bad;
  StartServer(o, /*load=*/false);
  const absl::Status s = server_->Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(bad));
  EXPECT_THAT(std::string(s.message()), HasSubstr("line 2"));
  TearDown();

  o.chat_template_path = good;
  StartServer(o);
  v1::GenerateRequest chat = TokenRequest({}, 3);
  v1::ChatMessage* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("abc");
  v1::GenerateResponse a, b;
  ASSERT_TRUE(Generate(chat, &a).ok());
  ASSERT_TRUE(Generate(TokenRequest({'a', 'b', 'c'}, 3), &b).ok());
  EXPECT_EQ(Ids(a), Ids(b));
}

}  // namespace
}  // namespace spikeserve::testing
