#include "runtime/quant/quant_plan.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/text_file.h"
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

// Each rotation of the plan reaches the options on its own.
TEST(QuantPlan, AppliesEachRotation) {
  Fixture f;
  for (const auto& [down, norm] :
       {std::pair{false, false}, {true, false}, {false, true}, {true, true}}) {
    v1::QuantPlan p = f.ValidPlan();
    p.mutable_rotation()->set_down_hadamard(down);
    p.mutable_rotation()->set_norm_hadamard(norm);
    auto a = ApplyQuantPlan(p, f.fp, f.config);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->quant.down_hadamard, down);
    EXPECT_EQ(a->quant.norm_hadamard, norm);
  }
}

// Sites marked 4-bit become W4A8 sites with their group (0 = automatic);
// the others stay W8A8.
TEST(QuantPlan, AppliesWeightBitsPerSite) {
  Fixture f;
  v1::QuantPlan p = f.ValidPlan();
  p.mutable_sites(0)->set_weight_bits(4);
  p.mutable_sites(3)->set_weight_bits(4);
  p.mutable_sites(3)->set_weight_group(32);
  p.mutable_sites(3)->set_weight_min(true);
  p.mutable_sites(4)->set_weight_bits(8);
  auto a = ApplyQuantPlan(p, f.fp, f.config);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(
      a->quant.w4_sites,
      (std::map<SiteKey, int>{{{0, Site::kQkv}, 0}, {{0, Site::kDown}, 32}}));
  EXPECT_EQ(a->quant.w4_min_sites, (std::set<SiteKey>{{0, Site::kDown}}));
  EXPECT_FALSE(a->quant.w4_with_min);
  EXPECT_TRUE(a->quant.w4_importance.empty());

  // A W4 site's importance, one value per input channel, is carried over.
  for (int j = 0; j < f.config.ffn; ++j) {
    p.mutable_sites(3)->add_weight_importance(0.5f * j);
  }
  a = ApplyQuantPlan(p, f.fp, f.config);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->quant.w4_importance.size(), 1u);
  const std::vector<float>& h = a->quant.w4_importance.at({0, Site::kDown});
  ASSERT_EQ(int(h.size()), f.config.ffn);
  EXPECT_EQ(h[3], 1.5f);
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

// Smoothing on for every qkv/gate_up/down site with valid scales, then
// scale 5 of sites[site] set to `bad`.
void SetSmoothing(v1::QuantPlan& p, int site, float bad) {
  p.mutable_smoothing()->set_enabled(true);
  p.mutable_smoothing()->set_alpha(0.5);
  for (v1::SiteStats& s : *p.mutable_sites()) {
    const int width = s.site() == "down" ? 96 : s.site() == "o" ? 0 : 64;
    for (int j = 0; j < width; ++j) s.add_smooth_scales(1.0f);
  }
  p.mutable_sites(site)->set_smooth_scales(5, bad);
}

void SetStats(v1::QuantPlan& p, int site, double ratio, double max,
              double median) {
  v1::SiteStats* s = p.mutable_sites(site);
  s->set_spike_ratio(ratio);
  s->set_max_absmax(max);
  s->set_median_absmax(median);
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
       "site 0.qkv has static_absmax 0; static mode needs a normal positive"},
      {"static range that underflows a float",
       [](v1::QuantPlan& p) {
         p.set_activation_mode(v1::PER_TENSOR_STATIC);
         p.mutable_sites(0)->set_static_absmax(1e-300);
       },
       "site 0.qkv has static_absmax 1e-300; static mode needs a normal"},
      // Issue 23 D4: values that are not finite or out of range.
      {"NaN smoothing scale", [](v1::QuantPlan& p) { SetSmoothing(p, 2, NAN); },
       "sites[2] (0.gate_up).smooth_scales[5] = nan is outside the allowed "
       "range [1e-05, 100000]"},
      {"infinite smoothing scale",
       [](v1::QuantPlan& p) { SetSmoothing(p, 0, INFINITY); },
       "sites[0] (0.qkv).smooth_scales[5] = inf"},
      {"zero smoothing scale",
       [](v1::QuantPlan& p) { SetSmoothing(p, 0, 0.0f); },
       "sites[0] (0.qkv).smooth_scales[5] = 0 is outside"},
      {"huge smoothing scale",
       [](v1::QuantPlan& p) { SetSmoothing(p, 0, 1e38f); },
       "sites[0] (0.qkv).smooth_scales[5] = 1e+38 is outside"},
      {"smoothing alpha",
       [](v1::QuantPlan& p) {
         SetSmoothing(p, 0, 1.0f);
         p.mutable_smoothing()->set_alpha(NAN);
       },
       "smoothing.alpha = nan is outside the allowed range [0, 1]"},
      {"NaN static range",
       [](v1::QuantPlan& p) {
         p.set_activation_mode(v1::PER_TENSOR_STATIC);
         p.mutable_sites(1)->set_static_absmax(NAN);
       },
       "sites[1] (0.o).static_absmax = nan"},
      {"huge static range",
       [](v1::QuantPlan& p) { p.mutable_sites(1)->set_static_absmax(1e300); },
       "sites[1] (0.o).static_absmax = 1e+300"},
      {"negative guard",
       [](v1::QuantPlan& p) { p.mutable_spike_guard()->set_factor(-1); },
       "spike_guard.factor = -1 is outside the allowed range [0, 1e+06]"},
      {"NaN guard",
       [](v1::QuantPlan& p) { p.mutable_spike_guard()->set_factor(NAN); },
       "spike_guard.factor = nan"},
      // Issue 23 D12: a plan for another model, or incomplete statistics.
      {"wrong layer count",
       [](v1::QuantPlan& p) { p.mutable_model()->set_layers(3); },
       "model.layers = 3 but the model has 2"},
      {"wrong vocabulary",
       [](v1::QuantPlan& p) { p.mutable_model()->set_vocab_size(301); },
       "model.vocab_size = 301 but the model has 300"},
      {"wrong hidden width",
       [](v1::QuantPlan& p) { p.mutable_model()->set_hidden(65); },
       "model.hidden = 65 but the model has 64"},
      {"wrong model name",
       [](v1::QuantPlan& p) { p.mutable_model()->set_name("other"); },
       "model.name = 'other' but the model is"},
      {"duplicate site", [](v1::QuantPlan& p) { *p.add_sites() = p.sites(3); },
       "sites[8] (0.down) repeats sites[3]"},
      {"missing site",
       [](v1::QuantPlan& p) { p.mutable_sites()->RemoveLast(); },
       "sites has no entry for 1.down"},
      {"static without sites",
       [](v1::QuantPlan& p) {
         p.set_activation_mode(v1::PER_TENSOR_STATIC);
         p.clear_sites();
       },
       "sites has no entry for 0.qkv"},
      {"NaN spike ratio", [](v1::QuantPlan& p) { SetStats(p, 4, NAN, 5, 1); },
       "sites[4] (1.qkv).spike_ratio = nan"},
      {"negative max absmax",
       [](v1::QuantPlan& p) { SetStats(p, 4, 5, -5, 1); },
       "sites[4] (1.qkv).max_absmax = -5"},
      {"zero median", [](v1::QuantPlan& p) { SetStats(p, 4, 5, 5, 0); },
       "sites[4] (1.qkv).median_absmax = 0"},
      {"median above max", [](v1::QuantPlan& p) { SetStats(p, 4, 5, 1, 2); },
       "sites[4] (1.qkv).median_absmax = 2 exceeds max_absmax = 1"},
      {"duplicate qfem module",
       [](v1::QuantPlan& p) { p.mutable_qfem()->add_modules("1.down"); },
       "qfem.modules[1]: 1.down is listed twice"},
      // Issue 23 D13: the QFeP prefix must leave room for a one-token prompt
      // and one new token (context 128: at most 126 prefix tokens).
      {"prefix leaves no room",
       [](v1::QuantPlan& p) {
         for (int i = 0; i < 124; ++i) p.mutable_qfep()->add_token_ids(5);
       },
       "qfep.token_ids has 127 tokens; the model's context of 128 must keep "
       "at least 2 positions"},
      {"smoothing width",
       [](v1::QuantPlan& p) {
         p.mutable_smoothing()->set_enabled(true);
         p.mutable_sites(0)->add_smooth_scales(1.0f);
       },
       "site 0.qkv has 1 smoothing scales; expected 64"},
      // Issue 24: per-site weight precision.
      {"weight bits",
       [](v1::QuantPlan& p) { p.mutable_sites(1)->set_weight_bits(5); },
       "sites[1] (0.o).weight_bits is 5; 8 (W8A8, also 0) or 4 (W4A8)"},
      {"weight group",
       [](v1::QuantPlan& p) {
         p.mutable_sites(2)->set_weight_bits(4);
         p.mutable_sites(2)->set_weight_group(48);
       },
       "sites[2] (0.gate_up).weight_group is 48; 32, 64, 128, 0"},
      {"4-bit QFeM module",
       [](v1::QuantPlan& p) { p.mutable_sites(7)->set_weight_bits(4); },
       "sites[7] (1.down) has weight_bits 4 but is a QFeM module"},
      {"minimum on an 8-bit module",
       [](v1::QuantPlan& p) { p.mutable_sites(1)->set_weight_min(true); },
       "sites[1] (0.o) has weight_min but weight_bits 0; a per-group minimum "
       "is for W4A8"},
      {"importance on an 8-bit module",
       [](v1::QuantPlan& p) { p.mutable_sites(1)->add_weight_importance(1); },
       "sites[1] (0.o) has weight_importance but weight_bits 0"},
      {"importance width",
       [](v1::QuantPlan& p) {
         p.mutable_sites(0)->set_weight_bits(4);
         p.mutable_sites(0)->add_weight_importance(1);
       },
       "sites[0] (0.qkv) has 1 weight_importance values; expected 64"},
      {"negative importance",
       [](v1::QuantPlan& p) {
         p.mutable_sites(0)->set_weight_bits(4);
         for (int j = 0; j < 64; ++j) {
           p.mutable_sites(0)->add_weight_importance(j == 5 ? -1.0f : 1.0f);
         }
       },
       "sites[0] (0.qkv).weight_importance[5] = -1 is outside the allowed "
       "range"},
  };
  Fixture f;
  for (const BadCase& c : cases) {
    v1::QuantPlan p = f.ValidPlan();
    c.mutate(p);
    auto a = ApplyQuantPlan(p, f.fp, f.config);
    EXPECT_FALSE(a.ok()) << c.name;
    EXPECT_THAT(std::string(a.status().message()), HasSubstr(c.expected))
        << c.name;
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

// A plan is written whole or not at all: a full disk is an error (the
// stream used to buffer the JSON and report success on /dev/full), a
// failed write leaves the old plan as it was, and no temporary file stays.
TEST(QuantPlan, WriteIsWholeOrAnError) {
  Fixture f;
  EXPECT_FALSE(WriteQuantPlan(f.ValidPlan(), "/dev/full").ok());
  const std::string dir = ::testing::TempDir() + "/plan-write";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/plan.json";
  ASSERT_TRUE(WriteQuantPlan(f.ValidPlan(), path).ok());
  v1::QuantPlan second = f.ValidPlan();
  second.mutable_qfem()->clear_modules();
  ASSERT_TRUE(WriteQuantPlan(second, path).ok());
  auto back = ReadQuantPlan(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->qfem().modules_size(), 0);
  // A failed write leaves the old plan whole: here its temporary file's
  // name is taken by a folder.
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  std::filesystem::create_directories(tmp);
  EXPECT_FALSE(WriteQuantPlan(f.ValidPlan(), path).ok());
  back = ReadQuantPlan(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->qfem().modules_size(), 0);
  std::filesystem::remove(tmp);
  // Through a symlink, the file it names is replaced and the link stays.
  const std::string link = dir + "/current.json";
  std::filesystem::create_symlink(path, link);
  ASSERT_TRUE(WriteQuantPlan(f.ValidPlan(), link).ok());
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  back = ReadQuantPlan(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->qfem().modules_size(), 1);
  std::filesystem::remove(link);
  // A directory in the way: refused, and the directory left as it was.
  const std::string blocked = dir + "/blocked.json";
  std::filesystem::create_directories(blocked + "/inside");
  EXPECT_FALSE(WriteQuantPlan(f.ValidPlan(), blocked).ok());
  EXPECT_TRUE(std::filesystem::is_directory(blocked + "/inside"));
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    files += e.is_regular_file();
  }
  EXPECT_EQ(files, 1);  // plan.json alone: no temporary file left
}

// Issue 23 D4/D12: a complete, calibrated plan with smoothing applies.
TEST(QuantPlan, AppliesACalibratedPlanWithSmoothing) {
  Fixture f;
  v1::QuantPlan p = f.ValidPlan();
  SetSmoothing(p, 0, 2.0f);
  for (int i = 0; i < p.sites_size(); ++i) SetStats(p, i, 3.5, 7, 2);
  auto a = ApplyQuantPlan(p, f.fp, f.config);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->quant.smooth_scales.size(), 6u);  // o has none
  // Sites may be omitted as a whole in a dynamic plan without smoothing.
  p = f.ValidPlan();
  p.clear_sites();
  a = ApplyQuantPlan(p, f.fp, f.config);
  ASSERT_TRUE(a.ok()) << a.status();
}

// Issue 23 D14: a directory or an empty file is named as such.
TEST(QuantPlan, DirectoryOrEmptyFileIsNamed) {
  const std::string dir = ::testing::TempDir();
  absl::StatusOr<v1::QuantPlan> p = ReadQuantPlan(dir);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("is a directory"));
  const std::string empty = ::testing::TempDir() + "/empty-plan.json";
  { std::ofstream(empty) << ""; }
  p = ReadQuantPlan(empty);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("is empty"));
}

// A model file given as the plan (--model and --plan swapped) is named as
// such at its first bytes (a multi-GB model was read whole, several times
// over), and a file that never ends stops at the bound.
TEST(QuantPlan, AModelFileOrEndlessFileIsRefusedAtOnce) {
  const std::string model = ::testing::TempDir() + "/model-as-plan.gguf";
  ASSERT_TRUE(TinyLlama({}).WriteFile(model));
  absl::StatusOr<v1::QuantPlan> p = ReadQuantPlan(model);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("is a GGUF model file"));
  // The bound, on a smaller one than a plan's.
  absl::StatusOr<std::string> zeros = ReadTextFile("/dev/zero", 1 << 20);
  ASSERT_FALSE(zeros.ok());
  EXPECT_THAT(zeros.status().message(), HasSubstr("is larger than 1048576"));
}

TEST(QuantPlan, ParseSiteKey) {
  EXPECT_EQ(*ParseSiteKey("0.gate_up", 2), (SiteKey{0, Site::kGateUp}));
  EXPECT_FALSE(ParseSiteKey("x.down", 2).ok());
  EXPECT_FALSE(ParseSiteKey("1.down.2", 2).ok());
}

// Every committed plan records, for each site, the statistics of the input
// the server sees (after the prefix, smoothing and rotation) that the spike
// metrics judge tokens against: present, and a median no larger than the
// largest token absmax calibrated on the same served input (static_absmax).
// The plain model's median (median_absmax) is not bounded so: on the
// default plan layer 29's down has 42.1 there against a served maximum of
// 4.08. A plan re-calibrated, or refreshed with `spikeserve-calibrate
// --restat`, passes.
TEST(QuantPlan, CommittedPlansRecordTheServedInputs) {
  const std::vector<std::string> plans = {
      "smollm2-135m-instruct.json",
      "smollm2-135m-instruct-mixed.json",
      "smollm2-135m-instruct-w4a8.json",
      "smollm2-135m-instruct-w4a8-min20.json",
      "smollm2-135m-instruct-w4a8-mixed10.json",
      "smollm2-135m-instruct-w4a8-ranked.json",
      "smollm2-135m-instruct-w4a8-ranked-min.json",
  };
  for (const std::string& name : plans) {
    absl::StatusOr<v1::QuantPlan> plan =
        ReadQuantPlan(std::string(SPIKESERVE_SOURCE_DIR) + "/plans/" + name);
    ASSERT_TRUE(plan.ok()) << plan.status();
    ASSERT_EQ(plan->sites_size(), 120) << name;
    for (const v1::SiteStats& s : plan->sites()) {
      const std::string site =
          absl::StrCat(name, " ", s.layer(), ".", s.site());
      EXPECT_GT(s.served_median_absmax(), 0) << site;
      EXPECT_GE(s.served_spike_ratio(), 1) << site;
      EXPECT_LE(s.served_median_absmax(), s.static_absmax()) << site;
    }
  }
}

}  // namespace
}  // namespace spikeserve
