#include "alloy/profile/elf_symbols.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace alloy::profile {

struct ElfSymbols::Object {
  std::uintptr_t bias;        // dlpi_addr
  std::uintptr_t lo, hi;      // the loaded segments' span
  char path[512];
  bool tried;                 // the file was looked at (found or not)
  const char* image;          // the file, mapped read-only (null: none)
  std::size_t image_size;
  const char* strtab;         // of the symbol table used
  std::size_t strtab_size;
  // (address, size, name offset) triples of function symbols, sorted by
  // address once `sorted` (after kLinearLookups lookups: a profile with a
  // handful of stacks, a short process's, never pays the sort).
  std::uint64_t* syms;
  std::size_t nsyms;
  std::size_t syms_bytes;
  std::size_t lookups;
  bool sorted;
};

namespace {

constexpr std::size_t kLinearLookups = 24;

int collect(struct dl_phdr_info* info, std::size_t, void* arg) {
  auto* out = static_cast<internal::MappedBuffer*>(arg);
  ElfSymbols::Object o{};
  o.bias = info->dlpi_addr;
  o.lo = ~std::uintptr_t{0};
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    const std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (lo < o.lo) o.lo = lo;
    if (lo + ph.p_memsz > o.hi) o.hi = lo + ph.p_memsz;
  }
  const char* name = info->dlpi_name;
  if (name == nullptr || name[0] == '\0') name = "/proc/self/exe";  // the program itself
  const std::size_t n = std::strlen(name);
  if (o.hi == 0 || n >= sizeof o.path) return 0;
  std::memcpy(o.path, name, n + 1);
  out->put(&o, sizeof o);
  return 0;
}

// The order of (addr, size, name) triples: by address, then size, then
// name offset. Of the symbols at one address the greatest is the one
// function_at names, sorted or not: a sized one over a size-less one, and
// the same alias in every lookup.
bool triple_less(const std::uint64_t* x, const std::uint64_t* y) {
  if (x[0] != y[0]) return x[0] < y[0];
  if (x[1] != y[1]) return x[1] < y[1];
  return x[2] < y[2];
}

// Heap sort of triples by triple_less: no allocation, O(n log n).
void sift(std::uint64_t* a, std::size_t i, std::size_t n) {
  for (;;) {
    std::size_t big = i;
    const std::size_t l = 2 * i + 1, r = l + 1;
    if (l < n && triple_less(a + 3 * big, a + 3 * l)) big = l;
    if (r < n && triple_less(a + 3 * big, a + 3 * r)) big = r;
    if (big == i) return;
    for (int k = 0; k < 3; ++k) {
      const std::uint64_t t = a[3 * i + k];
      a[3 * i + k] = a[3 * big + k];
      a[3 * big + k] = t;
    }
    i = big;
  }
}

void sort_triples(std::uint64_t* a, std::size_t n) {
  for (std::size_t i = n / 2; i-- > 0;) sift(a, i, n);
  for (std::size_t end = n; end-- > 1;) {
    for (int k = 0; k < 3; ++k) {
      const std::uint64_t t = a[k];
      a[k] = a[3 * end + k];
      a[3 * end + k] = t;
    }
    sift(a, 0, end);
  }
}

// Maps o's file and indexes its function symbols (.symtab, else .dynsym).
void load_symbols(ElfSymbols::Object& o) {
  o.tried = true;
  const int fd = ::open(o.path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st;
  void* img = MAP_FAILED;
  if (::fstat(fd, &st) == 0 && st.st_size >= static_cast<off_t>(sizeof(ElfW(Ehdr)))) {
    img = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  }
  ::close(fd);
  if (img == MAP_FAILED) return;
  o.image = static_cast<const char*>(img);
  o.image_size = static_cast<std::size_t>(st.st_size);
  const auto* eh = reinterpret_cast<const ElfW(Ehdr)*>(o.image);
  if (std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
      eh->e_shentsize != sizeof(ElfW(Shdr)) ||
      eh->e_shoff + std::size_t{eh->e_shnum} * sizeof(ElfW(Shdr)) > o.image_size) {
    return;
  }
  const auto* sh = reinterpret_cast<const ElfW(Shdr)*>(o.image + eh->e_shoff);
  const ElfW(Shdr)* table = nullptr;
  static const int kWanted[] = {SHT_SYMTAB, SHT_DYNSYM};
  for (int want : kWanted) {
    for (int i = 0; i < eh->e_shnum && table == nullptr; ++i) {
      if (sh[i].sh_type == static_cast<ElfW(Word)>(want)) table = &sh[i];
    }
    if (table != nullptr) break;
  }
  if (table == nullptr || table->sh_link >= eh->e_shnum ||
      table->sh_offset + table->sh_size > o.image_size) {
    return;
  }
  const ElfW(Shdr)& str = sh[table->sh_link];
  if (str.sh_offset + str.sh_size > o.image_size) return;
  o.strtab = o.image + str.sh_offset;
  o.strtab_size = str.sh_size;
  const auto* syms = reinterpret_cast<const ElfW(Sym)*>(o.image + table->sh_offset);
  const std::size_t count = table->sh_size / sizeof(ElfW(Sym));
  std::size_t funcs = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (ELF64_ST_TYPE(syms[i].st_info) == STT_FUNC && syms[i].st_value != 0) ++funcs;
  }
  if (funcs == 0) return;
  const std::size_t bytes = (funcs * 3 * sizeof(std::uint64_t) + 4095) & ~std::size_t{4095};
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return;
  auto* t = static_cast<std::uint64_t*>(mem);
  std::size_t n = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (ELF64_ST_TYPE(syms[i].st_info) != STT_FUNC || syms[i].st_value == 0) continue;
    if (syms[i].st_name >= o.strtab_size) continue;
    t[3 * n] = syms[i].st_value;
    t[3 * n + 1] = syms[i].st_size;
    t[3 * n + 2] = syms[i].st_name;
    ++n;
  }
  o.syms = t;
  o.nsyms = n;
  o.syms_bytes = bytes;
}

}  // namespace

ElfSymbols::~ElfSymbols() {
  auto* objs = reinterpret_cast<Object*>(objects_.data());
  const std::size_t n = objects_.size() / sizeof(Object);
  for (std::size_t i = 0; i < n; ++i) {
    if (objs[i].syms != nullptr) ::munmap(objs[i].syms, objs[i].syms_bytes);
    if (objs[i].image != nullptr) ::munmap(const_cast<char*>(objs[i].image), objs[i].image_size);
  }
}

bool ElfSymbols::load_objects() noexcept {
  loaded_ = true;
  dl_iterate_phdr(collect, &objects_);
  return !objects_.failed();
}

const char* ElfSymbols::function_at(std::uintptr_t pc) noexcept {
  if (!loaded_ && !load_objects()) return nullptr;
  auto* objs = reinterpret_cast<Object*>(objects_.data());
  const std::size_t n = objects_.size() / sizeof(Object);
  for (std::size_t i = 0; i < n; ++i) {
    Object& o = objs[i];
    if (pc < o.lo || pc >= o.hi) continue;
    if (!o.tried) load_symbols(o);
    if (o.nsyms == 0) return nullptr;
    // The last symbol starting at or below the file address, if it spans it.
    const std::uint64_t addr = pc - o.bias;
    const std::uint64_t* s = nullptr;
    if (!o.sorted && ++o.lookups > kLinearLookups) {
      sort_triples(o.syms, o.nsyms);
      o.sorted = true;
    }
    if (o.sorted) {
      std::size_t lo = 0, hi = o.nsyms;
      while (lo < hi) {
        const std::size_t mid = (lo + hi) / 2;
        if (o.syms[3 * mid] <= addr) {
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
      if (lo == 0) return nullptr;
      s = o.syms + 3 * (lo - 1);
    } else {
      // A scan costs a few instructions a symbol; a sort ~20 log n: cheaper
      // for the first lookups. The greatest triple at or below addr, as the
      // binary search above finds once sorted.
      for (std::size_t k = 0; k < o.nsyms; ++k) {
        const std::uint64_t* c = o.syms + 3 * k;
        if (c[0] > addr) continue;
        if (s == nullptr || triple_less(s, c)) s = c;
      }
      if (s == nullptr) return nullptr;
    }
    // Symbols without a size (hand-written assembly) cover up to the next.
    if (s[1] != 0 && addr >= s[0] + s[1]) return nullptr;
    return o.strtab + s[2];
  }
  return nullptr;
}

bool ElfSymbols::symbolize(void* ctx, std::uintptr_t pc, Frame* out) noexcept {
  const char* name = static_cast<ElfSymbols*>(ctx)->function_at(pc);
  if (name == nullptr || name[0] == '\0') return false;
  out->system_name = name;  // mangled: pprof demangles it
  return true;
}

}  // namespace alloy::profile
