// Arbitrary text as a quant plan (JSON): parsing and applying it to the
// tiny model fail cleanly or succeed.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "fuzz/fuzz_fixture.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spikeserve;
  const fuzz::TinyModel& m = fuzz::GetTinyModel();
  auto plan = ParseQuantPlan(
      absl::string_view(reinterpret_cast<const char*>(data), size), "input");
  if (!plan.ok()) return 0;
  // Half the time with the right fingerprint, so that application runs.
  if (size % 2 == 0) *plan->mutable_model() = m.fingerprint;
  (void)ApplyQuantPlan(*plan, m.fingerprint, m.config);
  return 0;
}
