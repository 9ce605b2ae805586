// alloy::profile::PprofWriter — a heap profile in pprof's profile.proto
// format, gzip-compressed, written without malloc.
//
// Why: `go tool pprof` (and every pprof front end) draws call graphs, flame
// graphs and top lists from profile.proto. The writer must work inside
// malloc itself (the malloc adapter's sampled profile), so it calls nothing
// that can allocate: its tables live in its own mmap'd memory (grown with
// mremap), the output is written with write(2), and the gzip stream uses
// stored deflate blocks and its own crc32 (pprof reads any valid gzip).
//
// Each sample carries four values, pprof's heap-profile sample types:
// alloc_objects (count), alloc_space (bytes), inuse_objects (count),
// inuse_space (bytes); inuse_space is the default view. Locations are raw
// addresses (frames are return addresses; each is stored minus one, so it
// names the call instruction) and the profile lists the process's executable
// mappings from /proc/self/maps with their GNU build ids (from the ELF notes,
// through dl_iterate_phdr), so pprof can symbolize offline from the binaries
// on disk (from their DWARF: go tool pprof's reader misses many C++ units).
// A symbolizer passed to write_*() puts functions and lines in the profile
// itself instead: ElfSymbols (elf_symbols.h, no malloc) or libdw (debug/).
//
// Cost: add() is O(depth) (a hash lookup per frame, one copy of the encoded
// sample); write_*() reads /proc/self/maps once and writes the profile in a
// few write(2) calls: O(samples + locations + mappings). Memory: about 16
// bytes per sample frame plus 32 per distinct address, all mmap'd and given
// back by the destructor. Thread safety: none; one writer per thread (the
// caller locks if several threads add to one writer). Safe to use in a
// process whose malloc is alloy, from inside malloc, and after fork.
//
// Example:
//   alloy::profile::PprofWriter w(/*period=*/512 * 1024);
//   std::uintptr_t frames[64];
//   int n = alloy::profile::capture_stack(frames, 64, 0);  // stack.h
//   w.add(frames, n, {1, 4096, 1, 4096});   // one live 4 KiB block
//   w.write_file("/tmp/heap.pb.gz");         // go tool pprof -top /tmp/heap.pb.gz
#pragma once

#include <cstddef>
#include <cstdint>

namespace alloy::profile {

// The values of one sample, in the order of the profile's sample types.
struct SampleValues {
  std::int64_t alloc_objects = 0;
  std::int64_t alloc_space = 0;
  std::int64_t inuse_objects = 0;
  std::int64_t inuse_space = 0;
};

// An allocation of `size` bytes seen by a Poisson sampler with mean `rate`
// bytes stands for 1 / (1 - exp(-size/rate)) allocations of that size (the
// unbiased estimate tcmalloc and Go use). `live` fills the in-use values too.
// rate <= 1 means every allocation was recorded: the values are exact.
SampleValues unsampled(std::size_t size, std::int64_t rate, bool live) noexcept;

// What a symbolizer says about one address (for PprofWriter::write_*): a
// profile with names needs no binaries to be read. Strings are copied at
// once; they need only live until the symbolizer is called again.
struct Frame {
  const char* function = nullptr;     // the name to show (demangled), or null
  const char* system_name = nullptr;  // the linkage (mangled) name, or null
  const char* file = nullptr;         // source file, or null
  int line = 0;                       // 0: unknown
};
// Fills *out for `pc` (the address of a call instruction, or of the leaf's
// instruction); false if it knows nothing. Called once per distinct address.
using SymbolizeFn = bool (*)(void* ctx, std::uintptr_t pc, Frame* out);

namespace internal {
// A growable byte buffer in its own mapping (mmap, grown with mremap). Out of
// memory sets failed() and drops the bytes; nothing throws or aborts.
class MappedBuffer {
 public:
  MappedBuffer() = default;
  ~MappedBuffer();
  MappedBuffer(const MappedBuffer&) = delete;
  MappedBuffer& operator=(const MappedBuffer&) = delete;

  bool reserve(std::size_t extra) noexcept;
  void put(const void* p, std::size_t n) noexcept;
  void byte(std::uint8_t b) noexcept { put(&b, 1); }
  void varint(std::uint64_t v) noexcept;
  void clear() noexcept { size_ = 0; }
  char* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool failed() const noexcept { return failed_; }

 private:
  char* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t cap_ = 0;
  bool failed_ = false;
};

// A hash map from 64-bit keys to ids 1..n in its own mapping; equal keys may
// repeat (find() asks the caller which entry is the one).
class IdMap {
 public:
  IdMap() = default;
  ~IdMap();
  IdMap(const IdMap&) = delete;
  IdMap& operator=(const IdMap&) = delete;
  // The id stored under `key` for which same(id) holds, else 0.
  template <typename Same>
  std::uint64_t find(std::uint64_t key, Same&& same) const noexcept {
    if (cap_ == 0) return 0;
    for (std::size_t j = slot(key);; j = (j + 1) & (cap_ - 1)) {
      if (table_[2 * j + 1] == 0) return 0;
      if (table_[2 * j] == key && same(table_[2 * j + 1])) return table_[2 * j + 1];
    }
  }
  // Adds key -> id (id != 0); false if memory ran out.
  bool insert(std::uint64_t key, std::uint64_t id) noexcept;

 private:
  std::size_t slot(std::uint64_t key) const noexcept;
  bool grow() noexcept;
  std::uint64_t* table_ = nullptr;  // {key, id} pairs; id 0 = empty
  std::size_t cap_ = 0;             // pairs; a power of two
  std::size_t count_ = 0;
};
}  // namespace internal

class PprofWriter {
 public:
  // `period`: the sampler's mean distance in bytes (1: every allocation was
  // recorded), written as the profile's period ("space", "bytes").
  explicit PprofWriter(std::int64_t period = 1) noexcept;
  ~PprofWriter();
  PprofWriter(const PprofWriter&) = delete;
  PprofWriter& operator=(const PprofWriter&) = delete;

  // One sample: `frames` are return addresses, innermost first (depth 0 is
  // allowed: an unknown site). Samples with equal stacks may be added many
  // times; pprof sums them.
  void add(const std::uintptr_t* frames, int depth, const SampleValues& values) noexcept;

  // Writes the gzip-compressed profile. write_file creates or truncates
  // `path` (mode 0644). False if a write or the memory for the tables failed.
  // With a symbolizer, locations carry functions and lines (the writer adds
  // no allocation of its own; whether `symbolize` may allocate is the
  // caller's business); without, pprof symbolizes from the mappings.
  bool write_fd(int fd, SymbolizeFn symbolize = nullptr, void* ctx = nullptr) noexcept;
  bool write_file(const char* path, SymbolizeFn symbolize = nullptr,
                  void* ctx = nullptr) noexcept;

  // False once memory for the tables could not be had (samples were lost).
  bool ok() const noexcept;
  std::size_t samples() const noexcept { return samples_count_; }
  std::size_t locations() const noexcept { return location_count_; }

 private:
  std::uint64_t location_id(std::uintptr_t pc) noexcept;
  std::uint64_t string_id(const char* s, std::size_t n) noexcept;
  std::uint64_t string_id(const char* s) noexcept;
  std::uint64_t function_id(const Frame& f) noexcept;
  void encode_mappings_and_locations(SymbolizeFn symbolize, void* ctx) noexcept;

  std::int64_t period_;
  internal::MappedBuffer samples_;       // encoded Profile.sample fields
  internal::MappedBuffer strings_;       // encoded Profile.string_table fields
  internal::MappedBuffer string_index_;  // (offset, length) of each string's bytes in strings_
  internal::MappedBuffer location_pcs_;  // pc of location id i+1, as uint64
  internal::MappedBuffer tail_;          // mappings and locations, built at write time
  internal::MappedBuffer functions_;     // encoded Profile.function fields (symbolized only)
  internal::MappedBuffer function_keys_;  // (name, system_name, file) string ids per function
  internal::IdMap locations_by_pc_;
  internal::IdMap strings_by_hash_;
  internal::IdMap functions_by_key_;
  std::size_t location_count_ = 0;
  std::size_t function_count_ = 0;
  std::size_t samples_count_ = 0;
  std::size_t string_count_ = 0;
  bool failed_ = false;
};

}  // namespace alloy::profile
