// A plan's W4 weights file (runtime/quant/w4_weights_file.h): what is
// written is read back unchanged, a file made for another model or not a
// weights file is refused naming it, and a plan reaches it (its path
// relative to the plan, every weight_from_file site present in it).
#include "runtime/quant/w4_weights_file.h"

#include <filesystem>
#include <fstream>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/gguf/ggml_type.h"
#include "runtime/quant/quant_plan.h"
#include "tests/fixtures/gguf_builder.h"

namespace spikeserve {
namespace {

using ::testing::HasSubstr;

W4Plain RandomPlain(int n, int k, int group, bool with_min, uint32_t seed) {
  std::mt19937 rng(seed);
  W4Plain p{n, k, group, with_min};
  p.u.resize(size_t(n) * k);
  for (uint8_t& v : p.u) v = uint8_t(rng() % 16);
  p.scale.resize(size_t(n) * (k / group));
  for (uint16_t& v : p.scale) v = uint16_t(rng() & 0x7bff);
  if (with_min) {
    p.min.resize(p.scale.size());
    for (uint16_t& v : p.min) v = uint16_t(rng() & 0xfbff);
  }
  return p;
}

std::string Dir(const std::string& name) {
  const std::string d = ::testing::TempDir() + "/" + name;
  std::filesystem::create_directories(d);
  return d;
}

TEST(W4WeightsFile, ReadsBackWhatWasWritten) {
  const std::string path = Dir("w4rt") + "/plan.w4.gguf";
  std::map<SiteKey, W4Plain> sites;
  sites[{0, Site::kO}] = RandomPlain(24, 64, 32, false, 1);
  sites[{3, Site::kDown}] = RandomPlain(10, 256, 128, true, 2);
  ASSERT_TRUE(WriteW4WeightsFile(path, "abc123", sites).ok());
  auto f = W4WeightsFile::Open(path, "abc123");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE((*f)->Has({0, Site::kDown}));
  for (const auto& [k, want] : sites) {
    ASSERT_TRUE((*f)->Has(k));
    absl::StatusOr<W4Plain> got = (*f)->Get(k);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->n, want.n);
    EXPECT_EQ(got->k, want.k);
    EXPECT_EQ(got->group, want.group);
    EXPECT_EQ(got->has_min, want.has_min);
    EXPECT_EQ(got->u, want.u);
    EXPECT_EQ(got->scale, want.scale);
    EXPECT_EQ(got->min, want.min);
  }
}

TEST(W4WeightsFile, RefusesOtherModelsAndOtherFilesNamingThem) {
  const std::string dir = Dir("w4bad");
  const std::string path = dir + "/a.w4.gguf";
  ASSERT_TRUE(
      WriteW4WeightsFile(path, "abc123",
                         {{{0, Site::kO}, RandomPlain(4, 32, 32, false, 3)}})
          .ok());
  auto other = W4WeightsFile::Open(path, "fff000");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.status().message(),
              HasSubstr("was made for the model abc123, not for this model "
                        "(fff000)"));
  const std::string model = dir + "/model.gguf";
  ASSERT_TRUE(testing::TinyLlama({}).WriteFile(model));
  EXPECT_THAT(W4WeightsFile::Open(model, "abc123").status().message(),
              HasSubstr("model.gguf' is not one"));
  EXPECT_THAT(
      W4WeightsFile::Open(dir + "/none.gguf", "abc123").status().message(),
      HasSubstr("none.gguf"));
  // Scales whose group is not 32, 64 or 128: rows of 48 in one group.
  ASSERT_TRUE(
      WriteW4WeightsFile(dir + "/odd.gguf", "abc123",
                         {{{0, Site::kO}, RandomPlain(4, 48, 48, false, 4)}})
          .ok());
  auto odd = W4WeightsFile::Open(dir + "/odd.gguf", "abc123");
  ASSERT_TRUE(odd.ok()) << odd.status();
  EXPECT_THAT((*odd)->Get({0, Site::kO}).status().message(),
              HasSubstr("site 0.o: group 48"));
}

// A codes tensor whose K (two codes per byte) does not fit an int is
// refused before anything is unpacked: K wrapped to 128, a valid group, and
// the unpacking wrote gigabytes past its buffer. The file is sparse.
TEST(W4WeightsFile, ShapesBeyondIntAreRefusedBeforeUnpacking) {
  testing::GgufBuilder b;
  b.SetString("spikeserve.w4_weights.model_hash", "abc123");
  b.AddTensor("blk.0.o.w4_scales", {1, 1}, uint32_t(GgmlType::kF16),
              std::string(2, '\0'));
  b.AddTensor("blk.0.o.w4_codes", {64, 1}, uint32_t(GgmlType::kI8),
              std::string(64, '\0'));
  b.SetTensorDims("blk.0.o.w4_codes", {(uint64_t(1) << 31) + 64, 1});
  const std::string path = Dir("w4-huge") + "/huge.gguf";
  ASSERT_TRUE(b.WriteFile(path));
  std::filesystem::resize_file(
      path, std::filesystem::file_size(path) + (uint64_t(1) << 31));
  auto f = W4WeightsFile::Open(path, "abc123");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT((*f)->Get({0, Site::kO}).status().message(),
              HasSubstr("blk.0.o.w4_codes"));
  std::filesystem::remove(path);
}

struct PlanFixture {
  std::string bytes = testing::TinyLlama({}).Build();
  std::unique_ptr<GgufFile> file = *GgufFile::FromBuffer(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  ModelConfig config = *ReadModelConfig(*file);
  v1::ModelFingerprint fp = FingerprintModel(*file, config);

  // Every site listed; 0.o W4A8 from the weights file.
  v1::QuantPlan Plan() const {
    v1::QuantPlan p;
    p.set_version(1);
    *p.mutable_model() = fp;
    p.set_activation_mode(v1::PER_TOKEN_DYNAMIC);
    for (int l = 0; l < 2; ++l) {
      for (const char* site : {"qkv", "o", "gate_up", "down"}) {
        v1::SiteStats* s = p.add_sites();
        s->set_layer(l);
        s->set_site(site);
      }
    }
    p.mutable_sites(1)->set_weight_bits(4);
    p.mutable_sites(1)->set_weight_group(32);
    p.mutable_sites(1)->set_weight_from_file(true);
    return p;
  }
};

TEST(W4WeightsFile, APlanFindsItsFileBesideIt) {
  PlanFixture f;
  const std::string dir = Dir("w4plan");
  ASSERT_TRUE(
      WriteW4WeightsFile(dir + "/p.w4.gguf", f.fp.hash(),
                         {{{0, Site::kO}, RandomPlain(64, 64, 32, false, 5)}})
          .ok());
  v1::QuantPlan plan = f.Plan();
  plan.set_w4_weights("p.w4.gguf");
  ASSERT_TRUE(WriteQuantPlan(plan, dir + "/p.json").ok());
  // Read from another working directory's point of view: the path is the
  // plan's directory's.
  auto read = ReadQuantPlan(dir + "/p.json");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->w4_weights(), dir + "/p.w4.gguf");
  auto applied = ApplyQuantPlan(*read, f.fp, f.config);
  ASSERT_TRUE(applied.ok()) << applied.status();
  ASSERT_NE(applied->quant.w4_given, nullptr);
  EXPECT_TRUE(applied->quant.w4_given->Has({0, Site::kO}));
  EXPECT_EQ(applied->quant.w4_sites.at({0, Site::kO}), 32);
}

TEST(W4WeightsFile, PlanErrorsNameTheSiteAndTheFile) {
  PlanFixture f;
  const std::string dir = Dir("w4planbad");
  v1::QuantPlan plan = f.Plan();
  EXPECT_THAT(ApplyQuantPlan(plan, f.fp, f.config).status().message(),
              HasSubstr("site 0.o has weight_from_file but the plan names no "
                        "w4_weights file"));
  plan.set_w4_weights(dir + "/missing.w4.gguf");
  EXPECT_THAT(ApplyQuantPlan(plan, f.fp, f.config).status().message(),
              HasSubstr("missing.w4.gguf"));
  ASSERT_TRUE(
      WriteW4WeightsFile(dir + "/q.w4.gguf", f.fp.hash(),
                         {{{1, Site::kO}, RandomPlain(64, 64, 32, false, 6)}})
          .ok());
  plan.set_w4_weights(dir + "/q.w4.gguf");
  EXPECT_THAT(ApplyQuantPlan(plan, f.fp, f.config).status().message(),
              HasSubstr("site 0.o has weight_from_file but " + dir +
                        "/q.w4.gguf has no weights for it"));
  plan.mutable_sites(1)->set_weight_bits(8);
  EXPECT_THAT(ApplyQuantPlan(plan, f.fp, f.config).status().message(),
              HasSubstr("has weight_from_file but weight_bits 8"));
}

}  // namespace
}  // namespace spikeserve
