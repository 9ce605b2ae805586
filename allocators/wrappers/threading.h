// alloy::Threading — whether a wrapper's bookkeeping may be shared by threads.
//
// One enum for every wrapper that offers a cheaper single-thread mode
// (CountingAllocator, LimitAllocator); each also names it as a member,
// `alloy::LimitAllocator::Threading`, so both spellings are the same type.
//
// Cost: none (a type). Thread safety: not applicable.
//
// Example:
//   alloy::CountingAllocator counting(alloy::c_allocator(), alloy::Threading::kSingleThread);
//   alloy::LimitAllocator capped(counting.allocator(), 1 << 20,
//                                alloy::LimitAllocator::Threading::kSingleThread);
#pragma once

namespace alloy {

enum class Threading : unsigned char {
  kShared,        // atomic bookkeeping (compare-and-swap, atomic adds): any number of threads
  kSingleThread,  // plain loads and stores: one thread at a time, cheaper
};

}  // namespace alloy
