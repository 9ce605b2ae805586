// debug/internal/pattern.h on its own: fill, all_are, find_changed and the
// canary helpers, for every length 0..257 (every size tier of the fixed
// 16-byte store/load sets and both sides of each tier boundary) from unaligned
// starts, with each mismatch position found exactly and nothing outside the
// range touched or seen.
#define BOOST_TEST_MODULE pattern
#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <cstring>
#include <vector>

#include "alloy/debug/internal/pattern.h"

namespace di = alloy::debug::internal;

namespace {

constexpr std::size_t kMaxLen = 257;
constexpr std::size_t kMargin = 32;
constexpr std::byte kOutside{0x11};

// A buffer with kMargin bytes of kOutside before and after any range used.
struct Buffer {
  std::vector<std::byte> bytes = std::vector<std::byte>(kMargin + 16 + kMaxLen + kMargin, kOutside);
  std::byte* at(std::size_t offset) { return bytes.data() + kMargin + offset; }
  // Every byte outside [offset, offset + n) is still kOutside.
  bool outside_untouched(std::size_t offset, std::size_t n) const {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      const bool inside = i >= kMargin + offset && i < kMargin + offset + n;
      if (!inside && bytes[i] != kOutside) return false;
    }
    return true;
  }
};

const std::byte kPatterns[] = {di::kFreedByte, di::kCanaryByte, std::byte{0x00}, std::byte{0xFF}};

}  // namespace

BOOST_AUTO_TEST_CASE(fill_writes_exactly_the_range_for_every_length_and_start) {
  for (std::byte pattern : kPatterns) {
    for (std::size_t offset = 0; offset < 16; ++offset) {
      for (std::size_t n = 0; n <= kMaxLen; ++n) {
        Buffer b;
        di::fill(b.at(offset), n, pattern);
        bool inside_ok = true;
        for (std::size_t i = 0; i < n; ++i) inside_ok &= b.at(offset)[i] == pattern;
        BOOST_TEST_REQUIRE(inside_ok, "n=" << n << " offset=" << offset);
        BOOST_TEST_REQUIRE(b.outside_untouched(offset, n), "n=" << n << " offset=" << offset);
        BOOST_TEST_REQUIRE(di::all_are(b.at(offset), n, pattern));
        const di::Mismatch m = di::find_changed(b.at(offset), n, pattern);
        BOOST_TEST_REQUIRE(m.count == 0u);
        BOOST_TEST_REQUIRE(m.first == 0u);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(every_single_mismatch_is_found_at_its_position) {
  for (std::size_t offset : {0u, 1u, 7u, 8u, 13u}) {
    for (std::size_t n = 1; n <= kMaxLen; ++n) {
      Buffer b;
      di::fill(b.at(offset), n, di::kFreedByte);
      for (std::size_t pos = 0; pos < n; ++pos) {
        b.at(offset)[pos] = std::byte{0x00};
        BOOST_TEST_REQUIRE(!di::all_are(b.at(offset), n, di::kFreedByte),
                           "n=" << n << " offset=" << offset << " pos=" << pos);
        const di::Mismatch m = di::find_changed(b.at(offset), n, di::kFreedByte);
        BOOST_TEST_REQUIRE(m.first == pos, "n=" << n << " offset=" << offset);
        BOOST_TEST_REQUIRE(m.count == 1u);
        b.at(offset)[pos] = di::kFreedByte;
      }
      BOOST_TEST_REQUIRE(di::all_are(b.at(offset), n, di::kFreedByte));
    }
  }
}

BOOST_AUTO_TEST_CASE(a_change_in_one_bit_is_a_mismatch) {
  for (std::size_t n = 1; n <= kMaxLen; ++n) {
    Buffer b;
    di::fill(b.at(3), n, di::kFreedByte);
    b.at(3)[n - 1] ^= std::byte{0x01};
    BOOST_TEST_REQUIRE(!di::all_are(b.at(3), n, di::kFreedByte), "n=" << n);
    BOOST_TEST_REQUIRE(di::find_changed(b.at(3), n, di::kFreedByte).first == n - 1);
  }
}

BOOST_AUTO_TEST_CASE(several_mismatches_give_the_first_and_the_count) {
  for (std::size_t n = 2; n <= kMaxLen; ++n) {
    Buffer b;
    di::fill(b.at(5), n, di::kFreedByte);
    const std::size_t first = n / 3, last = n - 1;
    b.at(5)[last] = std::byte{'x'};
    b.at(5)[first] = std::byte{'y'};
    const di::Mismatch m = di::find_changed(b.at(5), n, di::kFreedByte);
    BOOST_TEST_REQUIRE(m.first == first, "n=" << n);
    BOOST_TEST_REQUIRE(m.count == (first == last ? 1u : 2u));
  }
  Buffer b;
  di::fill(b.at(0), 100, di::kFreedByte);
  std::memset(b.at(0) + 40, 0, 20);
  const di::Mismatch m = di::find_changed(b.at(0), 100, di::kFreedByte);
  BOOST_TEST(m.first == 40u);
  BOOST_TEST(m.count == 20u);
}

BOOST_AUTO_TEST_CASE(bytes_just_outside_the_range_are_not_seen) {
  for (std::size_t n = 0; n <= kMaxLen; ++n) {
    Buffer b;
    di::fill(b.at(9), n, di::kFreedByte);
    b.at(9)[-1] = std::byte{0};
    b.at(9)[n] = std::byte{0};
    BOOST_TEST_REQUIRE(di::all_are(b.at(9), n, di::kFreedByte), "n=" << n);
    BOOST_TEST_REQUIRE(di::find_changed(b.at(9), n, di::kFreedByte).count == 0u);
  }
}

BOOST_AUTO_TEST_CASE(canary_is_written_after_the_block_and_checked_there) {
  for (std::size_t canary : {0u, 1u, 8u, 15u, 16u, 17u, 32u}) {
    for (std::size_t offset : {0u, 3u, 8u}) {
      for (std::size_t size = 0; size + canary <= kMaxLen; size += (size < 40 ? 1 : 37)) {
        Buffer b;
        std::byte* block = b.at(offset);
        di::write_canary(block, size, canary);
        for (std::size_t i = 0; i < canary; ++i) {
          BOOST_TEST_REQUIRE((block[size + i] == di::kCanaryByte));
        }
        BOOST_TEST_REQUIRE(b.outside_untouched(offset + size, canary),
                           "size=" << size << " canary=" << canary);
        BOOST_TEST_REQUIRE(di::canary_intact(block, size, canary));
        BOOST_TEST_REQUIRE(di::check_canary(block, size, canary).count == 0u);
        for (std::size_t j = 0; j < canary; ++j) {
          block[size + j] = std::byte{'!'};
          BOOST_TEST_REQUIRE(!di::canary_intact(block, size, canary),
                             "size=" << size << " canary=" << canary << " j=" << j);
          const di::Mismatch m = di::check_canary(block, size, canary);
          BOOST_TEST_REQUIRE(m.first == size + j);  // an offset from the block's start
          BOOST_TEST_REQUIRE(m.count == 1u);
          block[size + j] = di::kCanaryByte;
        }
        // The block's own bytes are not the canary's business.
        if (size > 0) block[size - 1] = std::byte{'!'};
        BOOST_TEST_REQUIRE(di::canary_intact(block, size, canary));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(canary_counts_every_changed_byte) {
  Buffer b;
  di::write_canary(b.at(1), 24, 16);
  std::memset(b.at(1) + 24 + 3, 0, 5);
  const di::Mismatch m = di::check_canary(b.at(1), 24, 16);
  BOOST_TEST(m.first == 27u);
  BOOST_TEST(m.count == 5u);
}
