#include "runtime/quant_plan.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fixtures/gguf_builder.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::TinyLlama;
using ::testing::HasSubstr;

struct Fixture {
  std::string bytes = TinyLlama({}).Build();
  std::unique_ptr<GgufFile> file = *GgufFile::FromBuffer(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  ModelConfig config = *ReadModelConfig(*file);
  v1::ModelFingerprint fp = FingerprintModel(*file, config);

  v1::QuantPlan ValidPlan() const {
    v1::QuantPlan p;
    p.set_version(1);
    *p.mutable_model() = fp;
    p.set_activation_mode(v1::PER_TENSOR_DYNAMIC);
    p.mutable_qfem()->add_modules("1.down");
    for (int id : {298, 10, 77}) p.mutable_qfep()->add_token_ids(id);
    for (int l = 0; l < 2; ++l) {
      for (const char* site : {"qkv", "o", "gate_up", "down"}) {
        v1::SiteStats* s = p.add_sites();
        s->set_layer(l);
        s->set_site(site);
        s->set_static_absmax(3.0);
      }
    }
    return p;
  }
};

TEST(QuantPlan, AppliesAValidPlan) {
  Fixture f;
  auto a = ApplyQuantPlan(f.ValidPlan(), f.fp, f.config);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->quant.w8a8);
  EXPECT_EQ(a->quant.mode, ActQuantMode::kPerTensorDynamic);
  EXPECT_EQ(a->quant.fp32_sites, (std::set<SiteKey>{{1, Site::kDown}}));
  EXPECT_THAT(a->prefix, ::testing::ElementsAre(298, 10, 77));
}

TEST(QuantPlan, FingerprintSeparatesModels) {
  Fixture a;
  std::string other = TinyLlama({.seed = 2}).Build();
  auto file = *GgufFile::FromBuffer(
      reinterpret_cast<const uint8_t*>(other.data()), other.size());
  const v1::ModelFingerprint fp2 = FingerprintModel(*file, a.config);
  EXPECT_NE(fp2.hash(), a.fp.hash());
  EXPECT_EQ(FingerprintModel(*a.file, a.config).hash(), a.fp.hash());  // stable
  auto s = ApplyQuantPlan(a.ValidPlan(), fp2, a.config);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.status().message(), HasSubstr("calibrated for model"));
}

struct BadCase {
  const char* name;
  void (*mutate)(v1::QuantPlan&);
  const char* expected;
};

TEST(QuantPlan, RejectsBadPlansNamingTheField) {
  const BadCase cases[] = {
      {"unknown site",
       [](v1::QuantPlan& p) { p.mutable_qfem()->add_modules("1.mlp"); },
       "unknown site 'mlp'"},
      {"bad module syntax",
       [](v1::QuantPlan& p) { p.mutable_qfem()->add_modules("down"); },
       "is not LAYER.SITE"},
      {"layer out of range",
       [](v1::QuantPlan& p) { p.mutable_qfem()->add_modules("7.down"); },
       "layer 7 outside 0..1"},
      {"prefix id out of range",
       [](v1::QuantPlan& p) { p.mutable_qfep()->add_token_ids(300); },
       "qfep.token_ids: id 300 outside the vocabulary [0, 300)"},
      {"negative prefix id",
       [](v1::QuantPlan& p) { p.mutable_qfep()->add_token_ids(-1); }, "id -1"},
      {"no mode",
       [](v1::QuantPlan& p) {
         p.set_activation_mode(v1::ACTIVATION_MODE_UNSPECIFIED);
       },
       "activation_mode is unspecified"},
      {"static without range",
       [](v1::QuantPlan& p) {
         p.set_activation_mode(v1::PER_TENSOR_STATIC);
         p.mutable_sites(0)->set_static_absmax(0);
       },
       "site 0.qkv has no positive static_absmax"},
      {"smoothing width",
       [](v1::QuantPlan& p) {
         p.mutable_smoothing()->set_enabled(true);
         p.mutable_sites(0)->add_smooth_scales(1.0f);
       },
       "site 0.qkv has 1 smoothing scales; expected 64"},
  };
  Fixture f;
  for (const BadCase& c : cases) {
    v1::QuantPlan p = f.ValidPlan();
    c.mutate(p);
    auto a = ApplyQuantPlan(p, f.fp, f.config);
    EXPECT_FALSE(a.ok()) << c.name;
    EXPECT_THAT(a.status().message(), HasSubstr(c.expected)) << c.name;
  }
}

TEST(QuantPlan, JsonRoundTripAndFileErrors) {
  Fixture f;
  const std::string path = ::testing::TempDir() + "/plan.json";
  ASSERT_TRUE(WriteQuantPlan(f.ValidPlan(), path).ok());
  auto back = ReadQuantPlan(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->qfem().modules(0), "1.down");
  EXPECT_EQ(back->model().hash(), f.fp.hash());
  EXPECT_EQ(ReadQuantPlan("/nonexistent.json").status().code(),
            absl::StatusCode::kNotFound);
  const std::string bad = ::testing::TempDir() + "/bad.json";
  { std::ofstream(bad) << "{\"version\": 1, \"no_such_field\": 3}"; }
  EXPECT_THAT(ReadQuantPlan(bad).status().message(),
              HasSubstr("not a valid plan"));
  { std::ofstream(bad) << "{\"version\": 2}"; }
  EXPECT_THAT(ReadQuantPlan(bad).status().message(), HasSubstr("version 2"));
}

TEST(QuantPlan, ParseSiteKey) {
  EXPECT_EQ(*ParseSiteKey("0.gate_up", 2), (SiteKey{0, Site::kGateUp}));
  EXPECT_FALSE(ParseSiteKey("x.down", 2).ok());
  EXPECT_FALSE(ParseSiteKey("1.down.2", 2).ok());
}

}  // namespace
}  // namespace spikeserve
