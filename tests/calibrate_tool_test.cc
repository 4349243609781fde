// spikeserve-calibrate as a process, on a tiny model the test writes: the
// plan records the served inputs' statistics, --restat reproduces them,
// and flags that make a plan the server would refuse fail before any work.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/quant/quant_plan.h"
#include "tests/fixtures/gguf_builder.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::TinyLlama;
using ::testing::HasSubstr;

class CalibrateToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // One folder per test: CTest runs the tests of this binary in parallel.
    dir_ = ::testing::TempDir() + "/calibrate-tool-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    model_ = dir_ + "/tiny.gguf";
    std::ofstream(model_, std::ios::binary)
        << TinyLlama({.hidden = 64, .ffn = 128, .context = 256}).Build();
    text_ = dir_ + "/text.txt";
    std::ofstream out(text_);
    for (int i = 0; i < 40; ++i) {
      out << "The quick brown fox " << i << " jumps over the lazy dog. ";
    }
  }
  // Runs the tool with `flags`; its exit code, stderr in `err`.
  int Run(const std::string& flags, std::string* err) {
    const std::string err_path = dir_ + "/stderr.txt";
    const std::string cmd = std::string(SPIKESERVE_CALIBRATE_BINARY) +
                            " --model " + model_ + " --text " + text_ +
                            " --window 32 --windows 2 --qfem off " + flags +
                            " > " + dir_ + "/stdout.txt 2> " + err_path;
    const int status = std::system(cmd.c_str());
    std::ifstream e(err_path);
    err->assign(std::istreambuf_iterator<char>(e), {});
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string dir_, model_, text_;
};

TEST_F(CalibrateToolTest, PlanRecordsTheServedInputsAndRestatReproducesThem) {
  const std::string plan_path = dir_ + "/plan.json";
  std::string err;
  ASSERT_EQ(Run("--smooth 0.5 --rotate --rotate_norm --qfep 298,40,41 --out " +
                    plan_path,
                &err),
            0)
      << err;
  absl::StatusOr<v1::QuantPlan> plan = ReadQuantPlan(plan_path);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->sites_size(), 8);  // 2 layers x 4 sites
  int differ = 0;
  for (const v1::SiteStats& s : plan->sites()) {
    SCOPED_TRACE(s.layer());
    SCOPED_TRACE(s.site());
    // The served statistics are those of the input the static range was
    // calibrated on: a median within its largest value.
    EXPECT_GT(s.served_median_absmax(), 0);
    EXPECT_GE(s.served_spike_ratio(), 1);
    EXPECT_LE(s.served_median_absmax(), s.static_absmax());
    differ += s.served_median_absmax() != s.median_absmax();
  }
  EXPECT_GT(differ, 0) << "smoothing and rotation change the served inputs";

  // --restat of the plan on the same text: the same statistics, every
  // decision kept.
  v1::QuantPlan cleared = *plan;
  for (v1::SiteStats& s : *cleared.mutable_sites()) {
    s.clear_served_median_absmax();
    s.clear_served_spike_ratio();
  }
  const std::string cleared_path = dir_ + "/cleared.json";
  ASSERT_TRUE(WriteQuantPlan(cleared, cleared_path).ok());
  const std::string restat_path = dir_ + "/restat.json";
  ASSERT_EQ(Run("--restat " + cleared_path + " --out " + restat_path, &err), 0)
      << err;
  absl::StatusOr<v1::QuantPlan> restat = ReadQuantPlan(restat_path);
  ASSERT_TRUE(restat.ok()) << restat.status();
  EXPECT_EQ(restat->SerializeAsString(), plan->SerializeAsString());
}

// Static scales: the QFeM search scores the model with the plan's own
// static ranges and guard (it scored per-tensor dynamic scales), and the
// plan it writes passes the server's check.
TEST_F(CalibrateToolTest, StaticPlanWithQfemSearch) {
  const std::string plan_path = dir_ + "/static.json";
  std::string err;
  ASSERT_EQ(Run("--mode per-tensor-static --guard 8 --qfep 298,40,41 "
                "--qfem_windows 2 --qfem_window 32 --qfem auto --out " +
                    plan_path,
                &err),
            0)
      << err;
  EXPECT_THAT(err, HasSubstr("QFeM auto: KL from FP32"));
  absl::StatusOr<v1::QuantPlan> plan = ReadQuantPlan(plan_path);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->activation_mode(), v1::PER_TENSOR_STATIC);
  EXPECT_EQ(plan->spike_guard().factor(), 8);
  EXPECT_EQ(plan->qfem().selection(), "auto");
}

TEST_F(CalibrateToolTest, FlagsThePlanCheckWouldRefuseFailBeforeAnyWork) {
  const struct {
    std::string flags, message;
  } cases[] = {
      {"--guard -1", "--guard is -1"},
      {"--qfem_tolerance -0.5", "--qfem_tolerance is -0.5"},
      {"--qfem alpha=nan", "alpha=R needs a finite R > 1"},
      {"--qfem 1.dwn", "unknown site 'dwn'"},
      {"--qfep 1,2,x", "'x' is not a token id"},
      // hidden 64 and ffn 128: group 128 fits down only.
      {"--weight_bits 4 --w4_group 128", "does not divide the input width 64"},
      {"--weight_bits 0.qkv --w4_group 128",
       "does not divide the input width 64"},
      {"--gptq_damp 0", "--gptq_damp is 0"},
      {"--gptq_damp nan", "--gptq_damp is nan"},
      {"--gptq_damp -0.1", "--gptq_damp is -0.1"},
      {"--gptq_damp 2000", "--gptq_damp is 2000"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.flags);
    const std::string out = dir_ + "/refused.json";
    std::string err;
    EXPECT_NE(Run(c.flags + " --out " + out, &err), 0);
    EXPECT_THAT(err, HasSubstr(c.message));
    EXPECT_THAT(err, ::testing::Not(HasSubstr("windows of")))
        << "refused after reading the text";
    EXPECT_FALSE(std::filesystem::exists(out));
  }
  // A list whose sites the group fits is taken.
  std::string err;
  EXPECT_EQ(Run("--qfep off --weight_bits 1.down --w4_group 128 --out " + dir_ +
                    "/down128.json",
                &err),
            0)
      << err;
}

}  // namespace
}  // namespace spikeserve
