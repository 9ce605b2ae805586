// alloy::SharedHeap: naming and mapping. shm_open/memfd_create, sizing,
// mmap, attachment slots, destroy and detach. The format is internal/layout.h,
// writing and checking a header internal/header_io.h, the lock and recovery
// internal/recovery.h.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <utility>

#include "alloy/allocators/shared_heap/internal/header_io.h"
#include "alloy/allocators/shared_heap/internal/layout.h"
#include "alloy/allocators/shared_heap/internal/lists.h"
#include "alloy/allocators/shared_heap/internal/recovery.h"
#include "alloy/allocators/shared_heap/internal/support.h"
#include "alloy/allocators/shared_heap/shared_heap.h"

namespace alloy {

using namespace shared_heap_internal;  // NOLINT(build/namespaces): this library's own machinery

namespace {

bool make_shm_name(std::string_view name, char (&out)[256], SharedHeapError* err) {
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  if (name.empty() || name.size() > 250 || name.find('/') != std::string_view::npos ||
      name.find('\0') != std::string_view::npos) {
    *err = make_error(SharedHeapErrc::kInvalidName, 0,
                      "invalid shared heap name \"%.*s\" (want 1-250 chars, no '/')",
                      static_cast<int>(name.size() > 64 ? 64 : name.size()), name.data());
    return false;
  }
  out[0] = '/';
  std::memcpy(out + 1, name.data(), name.size());
  out[name.size() + 1] = '\0';
  return true;
}

// Opens the shm object of an existing heap; `shm` receives its full name.
SharedResult<int> open_existing(std::string_view name, char (&shm)[256]) {
  SharedHeapError err;
  if (!make_shm_name(name, shm, &err)) return err;
  int fd = ::shm_open(shm, O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) {
    if (errno == ENOENT) {
      return make_error(SharedHeapErrc::kNotFound, 0, "no shared heap named %s", shm);
    }
    return system_error("shm_open", shm);
  }
  return fd;
}

}  // namespace

SharedHeap& SharedHeap::operator=(SharedHeap&& o) noexcept {
  if (this == &o) return *this;
  detach();
  base_ = std::exchange(o.base_, nullptr);
  size_ = std::exchange(o.size_, 0);
  fd_ = std::exchange(o.fd_, -1);
  attached_pid_ = std::exchange(o.attached_pid_, 0);
  slot_ = std::exchange(o.slot_, -1);
  std::memcpy(shm_name_, o.shm_name_, sizeof shm_name_);
  o.shm_name_[0] = '\0';
  return *this;
}

SharedResult<SharedHeap> SharedHeap::create(std::string_view name, std::size_t capacity) {
  char shm[256];
  SharedHeapError err;
  if (!make_shm_name(name, shm, &err)) return err;
  if (capacity < kMinCapacity || capacity > kMaxCapacity) {
    return make_error(SharedHeapErrc::kInvalidArgument, 0,
                      "capacity %zu outside [%zu, %zu]", capacity, kMinCapacity, kMaxCapacity);
  }
  int fd = ::shm_open(shm, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return make_error(SharedHeapErrc::kExists, 0, "shared heap %s already exists", shm);
    }
    return system_error("shm_open", shm);
  }
  auto r = create_on_fd(fd, capacity, shm);
  if (!r) ::shm_unlink(shm);
  return r;
}

SharedResult<SharedHeap> SharedHeap::create_anonymous(std::size_t capacity) {
  if (capacity < kMinCapacity || capacity > kMaxCapacity) {
    return make_error(SharedHeapErrc::kInvalidArgument, 0,
                      "capacity %zu outside [%zu, %zu]", capacity, kMinCapacity, kMaxCapacity);
  }
  int fd = ::memfd_create("alloy-shared-heap", MFD_CLOEXEC);
  if (fd < 0) return system_error("memfd_create", "alloy-shared-heap");
  return create_on_fd(fd, capacity, nullptr);
}

SharedResult<SharedHeap> SharedHeap::create_on_fd(int fd, std::size_t capacity,
                                                  const char* shm_name) {
  const char* label = shm_name != nullptr ? shm_name : "memfd";
  u64 page = static_cast<u64>(::sysconf(_SC_PAGESIZE));
  u64 mapping = round_up(capacity, page);
  // Reserve the pages now: a full /dev/shm is an error here, not a SIGBUS later.
  int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(mapping));
  if (rc == EOPNOTSUPP || rc == EINVAL) {
    rc = ::ftruncate(fd, static_cast<off_t>(mapping)) == 0 ? 0 : errno;
  }
  if (rc != 0) {
    ::close(fd);
    return make_error(SharedHeapErrc::kSystem, rc, "reserving %llu bytes for %s",
                      static_cast<unsigned long long>(mapping), label);
  }
  void* p = ::mmap(nullptr, mapping, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    SharedHeapError e = system_error("mmap", label);
    ::close(fd);
    return e;
  }
  auto* h = static_cast<Header*>(p);
  init_header(h, mapping);
  SharedHeap heap;
  heap.base_ = static_cast<std::byte*>(p);
  heap.size_ = mapping;
  heap.fd_ = fd;
  heap.attached_pid_ = ::getpid();
  heap.slot_ = 0;
  h->slots[0].pid = heap.attached_pid_;
  if (shm_name != nullptr) std::snprintf(heap.shm_name_, sizeof heap.shm_name_, "%s", shm_name);
  return heap;
}

SharedResult<SharedHeap> SharedHeap::attach(std::string_view name,
                                            const SharedAttachOptions& options) {
  char shm[256];
  SharedResult<int> opened = open_existing(name, shm);
  if (!opened) return opened.error();
  int fd = *opened;
  return attach_mapped(fd, options, shm);
}

SharedResult<SharedHeap> SharedHeap::attach_fd(int fd, const SharedAttachOptions& options) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    int e = errno;
    return make_error(SharedHeapErrc::kInvalidArgument, e, "cannot use fd %d", fd);
  }
  return attach_mapped(copy, options, nullptr);
}

SharedResult<SharedHeap> SharedHeap::attach_mapped(int fd, const SharedAttachOptions& options,
                                                   const char* shm_name) {
  const char* label = shm_name != nullptr ? shm_name : "fd";
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    SharedHeapError e = system_error("fstat", label);
    ::close(fd);
    return e;
  }
  u64 size = static_cast<u64>(st.st_size);
  if (size == 0) {  // create() has made the name but not sized it yet
    ::close(fd);
    return make_error(SharedHeapErrc::kNotReady, 0,
                      "%s is empty (its creator is still setting it up, or died doing so)",
                      label);
  }
  if (size < sizeof(Header)) {
    ::close(fd);
    return make_error(SharedHeapErrc::kTooSmall, 0,
                      "%s is %llu bytes, smaller than a shared heap header (%zu)", label,
                      static_cast<unsigned long long>(size), sizeof(Header));
  }
  void* p = ::mmap(options.address_hint, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    SharedHeapError e = system_error("mmap", label);
    ::close(fd);
    return e;
  }
  SharedHeap heap;  // from here on, early returns unmap and close
  heap.base_ = static_cast<std::byte*>(p);
  heap.size_ = size;
  heap.fd_ = fd;
  auto* h = static_cast<Header*>(p);
  SharedHeapError err;
  if (!validate_header(h, size, &err)) return err;
  {
    HeapLock lock(h);
    if (!lock.ok()) return lock.error();
    if (h->doomed != 0) {
      return make_error(SharedHeapErrc::kDestroyed, 0,
                        "shared heap %s is being destroyed; no new attachments", label);
    }
    int slot = -1;
    for (int pass = 0; pass < 2 && slot < 0; ++pass) {
      if (pass == 1) prune_dead_slots(h);
      for (std::size_t i = 0; i < kProcessSlots; ++i) {
        if (h->slots[i].pid == 0) {
          slot = static_cast<int>(i);
          break;
        }
      }
    }
    if (slot < 0) {
      return make_error(SharedHeapErrc::kTooManyProcesses, 0,
                        "all %zu attachment slots of %s are taken", kProcessSlots, label);
    }
    heap.attached_pid_ = ::getpid();
    heap.slot_ = slot;
    h->slots[slot].pid = heap.attached_pid_;
  }
  if (shm_name != nullptr) std::snprintf(heap.shm_name_, sizeof heap.shm_name_, "%s", shm_name);
  return heap;
}

SharedResult<void> SharedHeap::destroy(std::string_view name) {
  char shm[256];
  SharedResult<int> opened = open_existing(name, shm);
  if (!opened) return opened.error();
  int fd = *opened;
  SharedHeapError err;
  struct stat st;
  bool unlink_now = true;
  if (::fstat(fd, &st) == 0 && static_cast<u64>(st.st_size) >= sizeof(Header)) {
    u64 size = static_cast<u64>(st.st_size);
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      auto* h = static_cast<Header*>(p);
      if (validate_header(h, size, &err)) {
        HeapLock lock(h);
        if (lock.locked()) {  // a corrupt heap can still be destroyed
          h->doomed = 1;
          prune_dead_slots(h);
          unlink_now = live_slots(h) == 0;
        }
      }
      ::munmap(p, size);
    }
  }
  ::close(fd);
  if (unlink_now && ::shm_unlink(shm) != 0 && errno != ENOENT) {
    return system_error("shm_unlink", shm);
  }
  return {};
}

void SharedHeap::detach() {
  if (base_ == nullptr) return;
  auto* h = reinterpret_cast<Header*>(base_);
  bool unlink_name = false;
  if (slot_ >= 0 && attached_pid_ == ::getpid()) {
    HeapLock lock(h);
    if (lock.locked() && h->slots[slot_].pid == attached_pid_) h->slots[slot_].pid = 0;
    if (lock.locked() && h->doomed != 0) {
      prune_dead_slots(h);
      unlink_name = live_slots(h) == 0;
    }
  }
  ::munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
  if (unlink_name && shm_name_[0] != '\0') ::shm_unlink(shm_name_);
  base_ = nullptr;
  size_ = 0;
  fd_ = -1;
  slot_ = -1;
  attached_pid_ = 0;
  shm_name_[0] = '\0';
}

}  // namespace alloy
