/* Run by e2e_test under LD_PRELOAD=liballoy_malloc.so: a C program. The
   library must bring no C++ runtime with it; this prints every shared object
   the process has mapped besides itself, ld.so, libc and the preload. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  void* p = malloc(100);
  p = realloc(p, 10000);
  free(p);
  FILE* maps = fopen("/proc/self/maps", "r");
  if (maps == NULL) return 2;
  char line[4096];
  while (fgets(line, sizeof line, maps) != NULL) {
    const char* path = strchr(line, '/');
    if (path == NULL || strstr(path, ".so") == NULL) continue;
    if (strstr(path, "/libc.so") || strstr(path, "/ld-linux") || strstr(path, "liballoy_malloc")) continue;
    printf("also mapped: %s", path);
  }
  fclose(maps);
  printf("c ok\n");
  return 0;
}
