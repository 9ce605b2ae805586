// callgrind_count: how many instructions a function executes over a whole
// run of a program, counted by valgrind's callgrind. The instruction-count
// benchmarks (fastpath_icount, preload_icount) re-run themselves through it.
//
// Cost: a fork, exec of valgrind (a run 20-50x slower than native), one read
// of callgrind's output file. Thread safety: call from one thread.
//
// Example:
//   // Instructions inside bench_alloc() when `self --inner` runs, or -1:
//   double n = alloy::bench::callgrind_count("bench_alloc", {self, "--inner"},
//                                            [] { unsetenv("LD_PRELOAD"); });
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace alloy::bench {

// Runs argv (argv[0] the program) under callgrind, collecting only inside
// the function named `fn`; `in_child` runs in the child before the exec
// (set LD_PRELOAD, say). Returns the instructions counted, or -1 when the
// run failed.
template <class InChild>
double callgrind_count(const std::string& fn, const std::vector<std::string>& argv,
                       InChild in_child) {
  const std::string out = "/tmp/alloy_icount." + std::to_string(getpid()) + "." + fn;
  const pid_t pid = fork();
  if (pid == 0) {
    in_child();
    std::vector<std::string> args = {"valgrind", "--tool=callgrind", "--collect-atstart=no",
                                      "--toggle-collect=" + fn, "--callgrind-out-file=" + out};
    args.insert(args.end(), argv.begin(), argv.end());
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    const int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, 2);
    execvp("valgrind", cargs.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  std::FILE* f = std::fopen(out.c_str(), "r");
  if (f == nullptr) return -1;
  char line[4096];
  double total = -1;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "totals:", 7) == 0 || std::strncmp(line, "summary:", 8) == 0) {
      total = std::strtod(line + (line[0] == 't' ? 7 : 8), nullptr);
    }
  }
  std::fclose(f);
  std::remove(out.c_str());
  return total;
}

}  // namespace alloy::bench
