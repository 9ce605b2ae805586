// A server loop with a memory budget per request: each request runs in its
// own account under `requests` (total limit 8 MiB, 1 MiB per request), inside
// an AccountScope, so its plain std::string / std::vector / malloc use is
// charged to it. A greedy request fails alone, with an error naming its
// account, and the server goes on. Between requests the tree is printed as
// text and as Prometheus text (what a /metrics endpoint would serve); the
// failed request's account is kept (reset) so the report shows its refusal.
//
// The program links the malloc adapter (//adapters/malloc:alloy_malloc), so
// global malloc and new are alloy's and scopes apply to them.
//
//   bazel build //examples/accounts:request_server && bazel-bin/examples/accounts/request_server
#include <cstdio>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "alloy/allocators/engine/account.h"

namespace {

// A request handler written against nothing but the standard library.
std::string handle(int id, std::size_t work) {
  std::map<int, std::string> index;
  for (std::size_t i = 0; i < work; ++i) index[static_cast<int>(i)] = std::string(100, 'a' + id % 26);
  std::vector<char> body(work * 64, 'x');
  return "ok: " + std::to_string(index.size()) + " entries, " + std::to_string(body.size()) + " bytes";
}

}  // namespace

int main() {
  alloy::Account server = *alloy::Account::root().create("server");
  alloy::Account requests = *server.create("requests", {.limit = 8 << 20});
  alloy::Account cache = *server.create("cache");

  // Long-lived state charged through a handle: the cache's own heap.
  alloy::Allocator cache_heap = cache.allocator();
  auto entries = cache_heap.alloc<char>(64 << 10);

  const std::size_t work[] = {100, 2000, 500, 100000 /* greedy */, 800};
  for (int id = 0; id < 5; ++id) {
    alloy::Account req = *requests.create(std::to_string(id), {.limit = 1 << 20});
    std::string answer;
    bool failed = false;
    {
      alloy::AccountScope scope(req);
      try {
        std::string r = handle(id, work[id]);
        // Kept past the scope: the reply's bytes stay charged to the request
        // until it is freed, whoever frees it.
        answer = std::move(r);
      } catch (const std::bad_alloc&) {
        failed = true;
      }
    }
    if (failed) {
      std::printf("request %d failed: %s\n", id, alloy::last_account_refusal()->message().c_str());
    } else {
      std::printf("request %d: %s (peak %zu bytes)\n", id, answer.c_str(), req.peak());
    }
    if (id == 2) {
      std::printf("\n--- tree while request %d's reply is alive ---\n%s\n", id,
                  server.report_text().c_str());
    }
    answer.clear();
    answer.shrink_to_fit();  // the reply's block credits requests/<id>
    if (failed) {
      req.reset();  // its blocks go; the account stays for the report
    } else {
      req.destroy();  // whatever the handler left behind goes now
    }
  }

  std::printf("\n--- tree (text) ---\n%s", server.report_text().c_str());
  std::printf("\n--- tree (Prometheus) ---\n%s", server.report_prometheus().c_str());
  if (entries) cache_heap.free(*entries);
  server.destroy();
  return 0;
}
