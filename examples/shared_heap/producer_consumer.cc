// A producer process and a consumer process sharing a queue of variable-sized
// messages through an alloy::SharedHeap.
//
// The parent creates the heap, puts a Queue in it under the root "queue",
// forks the consumer (which attaches by name, so it maps the heap at its own
// address) and produces. Messages are linked by SharedOffset, never by
// pointer; the consumer frees each message the producer allocated.
//
//   bazel build //examples/shared_heap:producer_consumer
//   bazel-bin/examples/shared_heap/producer_consumer [messages]
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "alloy/allocators/shared_heap/shared_heap.h"

namespace {

struct Message {
  alloy::SharedOffset<Message> next;
  std::uint32_t seq;
  std::uint32_t length;  // of text
  char* text() { return reinterpret_cast<char*>(this + 1); }
  std::size_t block_bytes() const { return sizeof(Message) + length; }
};

// A process-shared FIFO that lives inside the heap.
struct Queue {
  pthread_mutex_t mutex;
  pthread_cond_t nonempty;
  alloy::SharedOffset<Message> head;
  alloy::SharedOffset<Message> tail;
  std::uint32_t queued;
  std::uint32_t done;
};

void init_queue(Queue* q) {
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  pthread_mutex_init(&q->mutex, &ma);
  pthread_mutexattr_destroy(&ma);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
  pthread_cond_init(&q->nonempty, &ca);
  pthread_condattr_destroy(&ca);
}

int consumer(const char* name) {
  auto heap = alloy::SharedHeap::attach(name);
  if (!heap) {
    std::fprintf(stderr, "consumer: attach: %s\n", heap.error().message);
    return 1;
  }
  auto qoff = heap->root<Queue>("queue");
  if (!qoff) {
    std::fprintf(stderr, "consumer: %s\n", qoff.error().message);
    return 1;
  }
  Queue* q = heap->get(*qoff);
  std::printf("consumer %d: heap mapped at %p\n", ::getpid(), static_cast<void*>(heap->base()));
  alloy::Allocator a = heap->allocator();
  std::size_t got = 0, bytes = 0;
  for (;;) {
    pthread_mutex_lock(&q->mutex);
    while (q->head.is_null() && q->done == 0) pthread_cond_wait(&q->nonempty, &q->mutex);
    if (q->head.is_null()) {
      pthread_mutex_unlock(&q->mutex);
      break;
    }
    alloy::SharedOffset<Message> off = q->head;
    Message* m = heap->get(off);
    q->head = m->next;
    if (q->head.is_null()) q->tail = {};
    --q->queued;
    pthread_mutex_unlock(&q->mutex);

    std::printf("consumer: #%-3u %4u bytes at offset %-7llu \"%.*s%s\"\n", m->seq, m->length,
                static_cast<unsigned long long>(off.offset),
                static_cast<int>(m->length < 48 ? m->length : 48), m->text(),
                m->length > 48 ? "..." : "");
    ++got;
    bytes += m->length;
    // Free a block another process allocated: same heap, same size.
    a.free(std::span<std::byte>(reinterpret_cast<std::byte*>(m), m->block_bytes()));
  }
  std::printf("consumer: received %zu messages, %zu bytes of text\n", got, bytes);
  heap->detach();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // both processes' lines interleave
  const int count = argc > 1 ? std::atoi(argv[1]) : 20;
  const std::string name = "/alloy_example_queue_" + std::to_string(::getpid());
  auto heap = alloy::SharedHeap::create(name, 1 << 20);
  if (!heap) {
    std::fprintf(stderr, "create: %s\n", heap.error().message);
    return 1;
  }
  alloy::Allocator a = heap->allocator();
  auto q = a.create<Queue>();
  if (!q) return 1;
  init_queue(*q);
  if (!heap->set_root("queue", heap->offset_of(*q))) return 1;
  std::printf("producer %d: heap %s mapped at %p\n", ::getpid(), name.c_str(),
              static_cast<void*>(heap->base()));

  std::fflush(stdout);
  pid_t child = ::fork();
  if (child == 0) ::_exit(consumer(name.c_str()));

  static const char* const kWords[] = {"alloy", "shared", "heap", "offset", "queue",
                                       "process", "message", "robust"};
  std::size_t sent_bytes = 0;
  for (int i = 0; i < count; ++i) {
    std::string text = "message " + std::to_string(i) + ":";
    for (int w = 0; w < (i * 7) % 23 + 1; ++w) {
      text += ' ';
      text += kWords[(i + w) % 8];
    }
    auto block = a.alloc<std::byte>(sizeof(Message) + text.size());
    if (!block) {
      std::fprintf(stderr, "producer: heap full at message %d\n", i);
      break;
    }
    auto* m = new (block->data()) Message{{}, static_cast<std::uint32_t>(i),
                                          static_cast<std::uint32_t>(text.size())};
    std::memcpy(m->text(), text.data(), text.size());
    sent_bytes += text.size();
    pthread_mutex_lock(&(*q)->mutex);
    alloy::SharedOffset<Message> off = heap->offset_of(m);
    if ((*q)->tail.is_null()) (*q)->head = off;
    else heap->get((*q)->tail)->next = off;
    (*q)->tail = off;
    ++(*q)->queued;
    pthread_cond_signal(&(*q)->nonempty);
    pthread_mutex_unlock(&(*q)->mutex);
    std::printf("producer: #%-3d %4zu bytes at offset %llu\n", i, text.size(),
                static_cast<unsigned long long>(off.offset));
    ::usleep(2000);  // a slow producer, so the two processes interleave
  }
  pthread_mutex_lock(&(*q)->mutex);
  (*q)->done = 1;
  pthread_cond_broadcast(&(*q)->nonempty);
  pthread_mutex_unlock(&(*q)->mutex);
  std::fflush(stdout);

  int status = 0;
  ::waitpid(child, &status, 0);
  auto s = heap->stats();
  std::printf("producer: sent %d messages, %zu bytes of text; consumer exit %d\n", count,
              sent_bytes, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  if (s) {
    std::printf("heap: %zu live block(s) (the queue), %zu bytes in use, peak %zu, "
                "%llu allocs, %llu frees, %llu rejected frees\n",
                s->live_blocks, s->bytes_in_use, s->peak_bytes_in_use,
                static_cast<unsigned long long>(s->allocs),
                static_cast<unsigned long long>(s->frees),
                static_cast<unsigned long long>(s->rejected_frees));
  }
  pthread_mutex_destroy(&(*q)->mutex);
  pthread_cond_destroy(&(*q)->nonempty);
  a.destroy(*q);
  (void)alloy::SharedHeap::destroy(name);  // unlinked once we detach below
  heap->detach();
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
