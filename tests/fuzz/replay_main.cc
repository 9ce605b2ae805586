// Runs one libFuzzer target of tests/fuzz as a Boost.Test case, so every
// test run (g++ plain, ASan+UBSan, TSan) drives the harness and its shadow
// model, not only `tools/fuzz` under clang. The inputs are a fixed stream of
// pseudo-random byte strings (the same on every run); a broken invariant
// aborts inside the harness, which Boost.Test reports as a failed case after
// the checkpoint naming the input.
#define BOOST_TEST_MODULE fuzz_replay
#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

#ifndef ALLOY_FUZZ_REPLAY_INPUTS
#define ALLOY_FUZZ_REPLAY_INPUTS 2000
#endif

}  // namespace

BOOST_AUTO_TEST_CASE(pseudo_random_inputs_keep_the_model) {
  std::uint64_t state = 20261122;
  std::vector<std::uint8_t> input;
  for (int i = 0; i < ALLOY_FUZZ_REPLAY_INPUTS; ++i) {
    // Mostly short programs, some long ones (up to tools/fuzz's -max_len).
    const std::uint64_t r = splitmix64(state);
    const std::size_t len = (r & 7) == 0 ? r % 4096 : r % 512;
    input.resize(len);
    for (std::size_t j = 0; j < len; j += 8) {
      const std::uint64_t w = splitmix64(state);
      for (std::size_t k = 0; k < 8 && j + k < len; ++k) {
        input[j + k] = static_cast<std::uint8_t>(w >> (8 * k));
      }
    }
    BOOST_TEST_CHECKPOINT("pseudo-random input " << i << " (" << len << " bytes)");
    LLVMFuzzerTestOneInput(input.data(), input.size());
  }
}

BOOST_AUTO_TEST_CASE(empty_and_tiny_inputs) {
  const std::uint8_t bytes[4] = {0xff, 0x00, 0x7f, 0x80};
  for (std::size_t len = 0; len <= sizeof bytes; ++len) LLVMFuzzerTestOneInput(bytes, len);
  BOOST_TEST(true);
}
