#include "alloy/profile/pprof_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

// profile.proto, the fields written here (github.com/google/pprof, proto/profile.proto):
//   Profile:   1 sample_type (ValueType)  2 sample  3 mapping  4 location
//              6 string_table  9 time_nanos  11 period_type  12 period
//              14 default_sample_type (string index)
//   ValueType: 1 type  2 unit (string indices)
//   Sample:    1 location_id (packed uint64)  2 value (packed int64)
//   Mapping:   1 id  2 memory_start  3 memory_limit  4 file_offset  5 filename  6 build_id
//   Location:  1 id  2 mapping_id  3 address

namespace alloy::profile {
namespace {

constexpr int kVarint = 0;
constexpr int kLen = 2;
constexpr std::size_t kPage = 4096;

// Encodes into a fixed stack buffer (nested messages are small and bounded).
struct Small {
  std::uint8_t b[1024];
  std::size_t n = 0;
  void byte(std::uint8_t v) {
    if (n < sizeof b) b[n++] = v;
  }
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      byte(static_cast<std::uint8_t>(v | 0x80));
      v >>= 7;
    }
    byte(static_cast<std::uint8_t>(v));
  }
  void tag(int field, int wire) { varint(static_cast<std::uint64_t>(field) << 3 | wire); }
  void field(int f, std::uint64_t v) {
    tag(f, kVarint);
    varint(v);
  }
  bool full() const { return n >= sizeof b; }
};

std::size_t varint_len(std::uint64_t v) {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void put_tag(internal::MappedBuffer& out, int field, int wire) {
  out.varint(static_cast<std::uint64_t>(field) << 3 | wire);
}

void put_message(internal::MappedBuffer& out, int field, const Small& m) {
  put_tag(out, field, kLen);
  out.varint(m.n);
  out.put(m.b, m.n);
}

// crc32 (IEEE 802.3, reflected, as gzip uses), table built at compile time.
struct CrcTable {
  std::uint32_t t[256];
  constexpr CrcTable() : t{} {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
  }
};
constexpr CrcTable kCrc;

std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t n) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = kCrc.t[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

bool write_all(int fd, const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// A gzip member of stored (uncompressed) deflate blocks, streamed to fd.
class GzipStored {
 public:
  explicit GzipStored(int fd) : fd_(fd) {
    static const std::uint8_t header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    ok_ = write_all(fd_, header, sizeof header);
  }
  void put(const void* data, std::size_t n) {
    const char* p = static_cast<const char*>(data);
    while (ok_ && n > 0) {
      const std::size_t len = n < 65535 ? n : 65535;
      const std::uint8_t h[5] = {0,  // BFINAL=0, BTYPE=00 (stored)
                                 static_cast<std::uint8_t>(len), static_cast<std::uint8_t>(len >> 8),
                                 static_cast<std::uint8_t>(~len), static_cast<std::uint8_t>(~len >> 8)};
      ok_ = write_all(fd_, h, sizeof h) && write_all(fd_, p, len);
      crc_ = crc32_update(crc_, p, len);
      total_ += len;
      p += len;
      n -= len;
    }
  }
  bool finish() {
    if (!ok_) return false;
    // An empty final stored block, then crc32 and length (little-endian).
    std::uint8_t t[13] = {1, 0, 0, 0xff, 0xff};
    for (int i = 0; i < 4; ++i) t[5 + i] = static_cast<std::uint8_t>(crc_ >> (8 * i));
    for (int i = 0; i < 4; ++i) t[9 + i] = static_cast<std::uint8_t>(total_ >> (8 * i));
    return write_all(fd_, t, sizeof t);
  }

 private:
  int fd_;
  bool ok_ = false;
  std::uint32_t crc_ = 0;
  std::uint32_t total_ = 0;
};

std::uint64_t hash_pc(std::uintptr_t pc) {
  std::uint64_t h = pc * 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 29);
}

// exp(-x) for x >= 0, without libm: 2^-k exp(-r), r = x - k ln 2 in
// [0, ln 2): Taylor to r^13 (Horner with constant coefficients: error below
// 2e-13), and 2^-k from its exponent bits. No loop of divisions.
double exp_neg(double x) {
  constexpr double kLn2 = 0.6931471805599453;
  if (!(x < 700)) return 0;
  if (x < 0) x = 0;
  const int k = static_cast<int>(x * 1.4426950408889634);
  const double r = x - k * kLn2;
  const double t = -r;
  const double e =
      1 + t * (1 + t * (1.0 / 2 + t * (1.0 / 6 + t * (1.0 / 24 + t * (1.0 / 120 +
      t * (1.0 / 720 + t * (1.0 / 5040 + t * (1.0 / 40320 + t * (1.0 / 362880 +
      t * (1.0 / 3628800 + t * (1.0 / 39916800 + t * (1.0 / 479001600 +
      t * (1.0 / 6227020800.0)))))))))))));
  const std::uint64_t bits = static_cast<std::uint64_t>(1023 - k) << 52;  // 2^-k, k <= 1010
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return e * scale;
}

// ---- The process's executable mappings, with build ids. ----

struct Segment {  // one PT_LOAD segment of a loaded object
  std::uintptr_t lo, hi;
  std::uint8_t build_id[64];
  std::uint32_t build_id_len;
};

struct Mapping {
  std::uint64_t start, limit, offset;
  std::uint64_t filename, build_id;  // string ids
};

int collect_segment(struct dl_phdr_info* info, std::size_t, void* arg) {
  auto* out = static_cast<internal::MappedBuffer*>(arg);
  Segment seg{};
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const char* p = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
    const char* end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) nh;
      std::memcpy(&nh, p, sizeof nh);
      const char* name = p + sizeof nh;
      const char* desc = name + ((nh.n_namesz + 3) & ~3u);
      const char* next = desc + ((nh.n_descsz + 3) & ~3u);
      if (next > end) break;
      if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0 &&
          nh.n_descsz <= sizeof seg.build_id) {
        std::memcpy(seg.build_id, desc, nh.n_descsz);
        seg.build_id_len = nh.n_descsz;
      }
      p = next;
    }
  }
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    seg.lo = info->dlpi_addr + ph.p_vaddr;
    seg.hi = seg.lo + ph.p_memsz;
    out->put(&seg, sizeof seg);
  }
  return 0;
}

bool parse_hex(const char*& p, const char* end, std::uint64_t& v) {
  v = 0;
  const char* start = p;
  for (; p < end; ++p) {
    const char c = *p;
    unsigned d;
    if (c >= '0' && c <= '9') {
      d = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<unsigned>(c - 'a' + 10);
    } else {
      break;
    }
    v = v << 4 | d;
  }
  return p != start;
}

void skip_spaces(const char*& p, const char* end) {
  while (p < end && *p == ' ') ++p;
}

void skip_field(const char*& p, const char* end) {
  while (p < end && *p != ' ' && *p != '\n') ++p;
  skip_spaces(p, end);
}

bool read_file_into(const char* path, internal::MappedBuffer& out) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  for (;;) {
    if (!out.reserve(16384)) break;
    const ssize_t r = ::read(fd, out.data() + out.size(), 16384);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out.put(out.data() + out.size(), static_cast<std::size_t>(r));  // commits r bytes in place
  }
  ::close(fd);
  return !out.failed();
}

}  // namespace

// ---- MappedBuffer ----

namespace internal {

MappedBuffer::~MappedBuffer() {
  if (data_ != nullptr) ::munmap(data_, cap_);
}

bool MappedBuffer::reserve(std::size_t extra) noexcept {
  if (failed_) return false;
  if (size_ + extra <= cap_) return true;
  std::size_t cap = cap_ == 0 ? 16 * kPage : cap_ * 2;
  while (cap < size_ + extra) cap *= 2;
  void* p = data_ == nullptr
                ? ::mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                : ::mremap(data_, cap_, cap, MREMAP_MAYMOVE);
  if (p == MAP_FAILED) {
    failed_ = true;
    return false;
  }
  data_ = static_cast<char*>(p);
  cap_ = cap;
  return true;
}

void MappedBuffer::put(const void* p, std::size_t n) noexcept {
  if (n == 0 || !reserve(n)) return;
  if (p != data_ + size_) std::memmove(data_ + size_, p, n);
  size_ += n;
}

void MappedBuffer::varint(std::uint64_t v) noexcept {
  std::uint8_t b[10];
  std::size_t n = 0;
  while (v >= 0x80) {
    b[n++] = static_cast<std::uint8_t>(v | 0x80);
    v >>= 7;
  }
  b[n++] = static_cast<std::uint8_t>(v);
  put(b, n);
}

IdMap::~IdMap() {
  if (table_ != nullptr) ::munmap(table_, cap_ * 2 * sizeof(std::uint64_t));
}

std::size_t IdMap::slot(std::uint64_t key) const noexcept {
  std::uint64_t h = key * 0x9E3779B97F4A7C15ull;
  return static_cast<std::size_t>(h ^ (h >> 29)) & (cap_ - 1);
}

bool IdMap::grow() noexcept {
  const std::size_t old_cap = cap_;
  std::uint64_t* old = table_;
  const std::size_t cap = old_cap == 0 ? 1024 : old_cap * 2;
  void* p = ::mmap(nullptr, cap * 2 * sizeof(std::uint64_t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  table_ = static_cast<std::uint64_t*>(p);
  cap_ = cap;
  for (std::size_t i = 0; i < old_cap; ++i) {
    if (old[2 * i + 1] == 0) continue;
    std::size_t j = slot(old[2 * i]);
    while (table_[2 * j + 1] != 0) j = (j + 1) & (cap_ - 1);
    table_[2 * j] = old[2 * i];
    table_[2 * j + 1] = old[2 * i + 1];
  }
  if (old != nullptr) ::munmap(old, old_cap * 2 * sizeof(std::uint64_t));
  return true;
}

bool IdMap::insert(std::uint64_t key, std::uint64_t id) noexcept {
  if ((count_ + 1) * 2 > cap_ && !grow()) return false;
  std::size_t j = slot(key);
  while (table_[2 * j + 1] != 0) j = (j + 1) & (cap_ - 1);
  table_[2 * j] = key;
  table_[2 * j + 1] = id;
  ++count_;
  return true;
}

}  // namespace internal

// ---- unsampled ----

SampleValues unsampled(std::size_t size, std::int64_t rate, bool live) noexcept {
  double count = 1;
  if (rate > 1 && size > 0) {
    const double x = static_cast<double>(size) / static_cast<double>(rate);
    // 1 - exp(-x), with its series for small x (no cancellation).
    const double p = x < 1e-4 ? x - x * x / 2 + x * x * x / 6 : 1 - exp_neg(x);
    count = 1 / p;
  }
  SampleValues v;
  v.alloc_objects = static_cast<std::int64_t>(count + 0.5);
  v.alloc_space = static_cast<std::int64_t>(count * static_cast<double>(size) + 0.5);
  if (live) {
    v.inuse_objects = v.alloc_objects;
    v.inuse_space = v.alloc_space;
  }
  return v;
}

// ---- PprofWriter ----

PprofWriter::PprofWriter(std::int64_t period) noexcept : period_(period < 1 ? 1 : period) {
  // The first string must be "", then the names used by every profile.
  static const char* const kNames[] = {"",      "alloc_objects", "count",       "alloc_space",
                                       "bytes", "inuse_objects", "inuse_space", "space"};
  for (const char* s : kNames) string_id(s, std::strlen(s));
}

PprofWriter::~PprofWriter() = default;

bool PprofWriter::ok() const noexcept {
  return !failed_ && !samples_.failed() && !strings_.failed() && !string_index_.failed() &&
         !location_pcs_.failed();
}

std::uint64_t PprofWriter::string_id(const char* s) noexcept {
  return s == nullptr ? 0 : string_id(s, std::strlen(s));
}

std::uint64_t PprofWriter::string_id(const char* s, std::size_t n) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<std::uint8_t>(s[i])) * 0x100000001b3ull;
  const auto* idx = reinterpret_cast<const std::uint64_t*>(string_index_.data());
  const std::uint64_t found = strings_by_hash_.find(h, [&](std::uint64_t id) {
    return idx[2 * (id - 1) + 1] == n && std::memcmp(strings_.data() + idx[2 * (id - 1)], s, n) == 0;
  });
  if (found != 0) return found - 1;
  put_tag(strings_, 6, kLen);
  strings_.varint(n);
  const std::uint64_t entry[2] = {strings_.size(), n};
  strings_.put(s, n);
  string_index_.put(entry, sizeof entry);
  if (strings_.failed() || string_index_.failed() || !strings_by_hash_.insert(h, string_count_ + 1)) {
    failed_ = true;
    return 0;
  }
  return string_count_++;
}

std::uint64_t PprofWriter::function_id(const Frame& f) noexcept {
  const std::uint64_t name = string_id(f.function != nullptr ? f.function : f.system_name);
  const std::uint64_t system = string_id(f.system_name != nullptr ? f.system_name : f.function);
  const std::uint64_t file = string_id(f.file);
  const std::uint64_t key = hash_pc(name << 40 ^ system << 20 ^ file);
  // Functions are told apart by their three strings, kept beside the ids.
  const auto* keys = reinterpret_cast<const std::uint64_t*>(function_keys_.data());
  const std::uint64_t found = functions_by_key_.find(key, [&](std::uint64_t id) {
    const std::uint64_t* k = keys + 3 * (id - 1);
    return k[0] == name && k[1] == system && k[2] == file;
  });
  if (found != 0) return found;
  const std::uint64_t k[3] = {name, system, file};
  function_keys_.put(k, sizeof k);
  if (function_keys_.failed() || !functions_by_key_.insert(key, function_count_ + 1)) {
    failed_ = true;
    return 0;
  }
  Small m;
  m.field(1, function_count_ + 1);
  m.field(2, name);
  m.field(3, system);
  if (file != 0) m.field(4, file);
  put_message(functions_, 5, m);
  return ++function_count_;
}

std::uint64_t PprofWriter::location_id(std::uintptr_t pc) noexcept {
  const auto* pcs = reinterpret_cast<const std::uint64_t*>(location_pcs_.data());
  const std::uint64_t found =
      locations_by_pc_.find(pc, [&](std::uint64_t id) { return pcs[id - 1] == pc; });
  if (found != 0) return found;
  const std::uint64_t pc64 = pc;
  location_pcs_.put(&pc64, sizeof pc64);
  if (location_pcs_.failed() || !locations_by_pc_.insert(pc, location_count_ + 1)) {
    failed_ = true;
    return 0;
  }
  return ++location_count_;
}

void PprofWriter::add(const std::uintptr_t* frames, int depth,
                      const SampleValues& values) noexcept {
  if (!ok()) return;
  if (depth > 64) depth = 64;
  std::uint64_t ids[64];
  std::size_t ids_len = 0;
  for (int i = 0; i < depth; ++i) {
    ids[i] = location_id(frames[i]);
    if (ids[i] == 0) return;
    ids_len += varint_len(ids[i]);
  }
  const std::int64_t v[4] = {values.alloc_objects, values.alloc_space, values.inuse_objects,
                             values.inuse_space};
  std::size_t values_len = 0;
  for (std::int64_t x : v) values_len += varint_len(static_cast<std::uint64_t>(x));
  Small m;
  if (depth > 0) {
    m.tag(1, kLen);
    m.varint(ids_len);
    for (int i = 0; i < depth; ++i) m.varint(ids[i]);
  }
  m.tag(2, kLen);
  m.varint(values_len);
  for (std::int64_t x : v) m.varint(static_cast<std::uint64_t>(x));
  put_message(samples_, 2, m);
  ++samples_count_;
}

void PprofWriter::encode_mappings_and_locations(SymbolizeFn symbolize, void* ctx) noexcept {
  tail_.clear();
  internal::MappedBuffer segments;
  dl_iterate_phdr(collect_segment, &segments);
  const auto* segs = reinterpret_cast<const Segment*>(segments.data());
  const std::size_t nsegs = segments.size() / sizeof(Segment);

  internal::MappedBuffer maps_text;
  internal::MappedBuffer mappings;
  if (read_file_into("/proc/self/maps", maps_text)) {
    const char* p = maps_text.data();
    const char* end = p + maps_text.size();
    while (p < end) {
      const char* eol = static_cast<const char*>(std::memchr(p, '\n', end - p));
      if (eol == nullptr) eol = end;
      // start-limit perms offset dev inode path
      Mapping m{};
      const char* q = p;
      bool good = parse_hex(q, eol, m.start) && q < eol && *q == '-';
      if (good) {
        ++q;
        good = parse_hex(q, eol, m.limit);
      }
      skip_spaces(q, eol);
      const bool exec = good && eol - q >= 4 && q[2] == 'x';
      skip_field(q, eol);
      good = good && parse_hex(q, eol, m.offset);
      skip_spaces(q, eol);
      skip_field(q, eol);  // dev
      skip_field(q, eol);  // inode
      if (good && exec) {
        m.filename = string_id(q, static_cast<std::size_t>(eol - q));
        for (std::size_t i = 0; i < nsegs; ++i) {
          if (m.start >= segs[i].lo && m.start < segs[i].hi && segs[i].build_id_len > 0) {
            char hex[128];
            for (std::uint32_t k = 0; k < segs[i].build_id_len; ++k) {
              hex[2 * k] = "0123456789abcdef"[segs[i].build_id[k] >> 4];
              hex[2 * k + 1] = "0123456789abcdef"[segs[i].build_id[k] & 15];
            }
            m.build_id = string_id(hex, 2 * segs[i].build_id_len);
            break;
          }
        }
        mappings.put(&m, sizeof m);
      }
      p = eol + 1;
    }
  }
  const auto* maps = reinterpret_cast<const Mapping*>(mappings.data());
  const std::size_t nmaps = mappings.size() / sizeof(Mapping);
  for (std::size_t i = 0; i < nmaps; ++i) {
    Small m;
    m.field(1, i + 1);
    m.field(2, maps[i].start);
    m.field(3, maps[i].limit);
    m.field(4, maps[i].offset);
    m.field(5, maps[i].filename);
    if (maps[i].build_id != 0) m.field(6, maps[i].build_id);
    if (symbolize != nullptr) {
      // Names come with the profile: pprof must not look for binaries.
      m.field(7, 1);  // has_functions
      m.field(8, 1);  // has_filenames
      m.field(9, 1);  // has_line_numbers
    }
    put_message(tail_, 3, m);
  }
  const auto* pcs = reinterpret_cast<const std::uint64_t*>(location_pcs_.data());
  for (std::size_t id = 1; id <= location_count_; ++id) {
    // Return addresses point after the call: name the call instruction.
    const std::uint64_t addr = pcs[id - 1] - 1;
    // /proc/self/maps is sorted: binary search for the mapping holding addr.
    std::size_t lo = 0, hi = nmaps;
    while (lo < hi) {
      const std::size_t mid = (lo + hi) / 2;
      if (maps[mid].limit <= addr) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    Small m;
    m.field(1, id);
    if (lo < nmaps && maps[lo].start <= addr) m.field(2, lo + 1);
    m.field(3, addr);
    Frame f;
    if (symbolize != nullptr && symbolize(ctx, addr, &f) &&
        (f.function != nullptr || f.system_name != nullptr)) {
      Small line;
      line.field(1, function_id(f));
      if (f.line > 0) line.field(2, static_cast<std::uint64_t>(f.line));
      m.tag(4, kLen);
      m.varint(line.n);
      for (std::size_t k = 0; k < line.n; ++k) m.byte(line.b[k]);
    }
    put_message(tail_, 4, m);
  }
  if (segments.failed() || maps_text.failed() || mappings.failed()) failed_ = true;
}

bool PprofWriter::write_fd(int fd, SymbolizeFn symbolize, void* ctx) noexcept {
  encode_mappings_and_locations(symbolize, ctx);
  if (!ok() || tail_.failed()) return false;
  internal::MappedBuffer head;
  static const int kTypes[4][2] = {{1, 2}, {3, 4}, {5, 2}, {6, 4}};  // string ids: type, unit
  for (const auto& t : kTypes) {
    Small vt;
    vt.field(1, static_cast<std::uint64_t>(t[0]));
    vt.field(2, static_cast<std::uint64_t>(t[1]));
    put_message(head, 1, vt);
  }
  Small pt;
  pt.field(1, 7);  // "space"
  pt.field(2, 4);  // "bytes"
  put_message(head, 11, pt);
  put_tag(head, 12, kVarint);
  head.varint(static_cast<std::uint64_t>(period_));
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  put_tag(head, 9, kVarint);
  head.varint(static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
              static_cast<std::uint64_t>(ts.tv_nsec));
  put_tag(head, 14, kVarint);
  head.varint(6);  // "inuse_space"
  if (head.failed()) return false;

  GzipStored gz(fd);
  gz.put(head.data(), head.size());
  gz.put(samples_.data(), samples_.size());
  gz.put(tail_.data(), tail_.size());
  gz.put(functions_.data(), functions_.size());
  gz.put(strings_.data(), strings_.size());
  return gz.finish();
}

bool PprofWriter::write_file(const char* path, SymbolizeFn symbolize, void* ctx) noexcept {
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool ok = write_fd(fd, symbolize, ctx);
  return ::close(fd) == 0 && ok;
}

}  // namespace alloy::profile
