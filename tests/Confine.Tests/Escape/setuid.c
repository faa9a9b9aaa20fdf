/* Made setuid by EscapeProbeFixture and run inside the sandbox by probe.c: prints
 * "NAME value=euid:E/caps:EFFECTIVE/PERMITTED", the ids and capabilities it runs with. Its second
 * argument is only the test's marker, which shows whether it is still running. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void capability(const char *field, char *out, size_t size) {
  snprintf(out, size, "none");
  FILE *status = fopen("/proc/self/status", "r");
  if (status == NULL)
    return;
  char line[256];
  size_t length = strlen(field);
  while (fgets(line, sizeof line, status) != NULL) {
    if (strncmp(line, field, length) == 0) {
      snprintf(out, size, "%.16s", line + length + 1);
      break;
    }
  }
  fclose(status);
}

int main(int argc, char **argv) {
  char effective[32], permitted[32];
  capability("CapEff:", effective, sizeof effective);
  capability("CapPrm:", permitted, sizeof permitted);
  const char *name = argc > 1 ? argv[1] : "setuid";
  printf("%s value=euid:%d/caps:%s/%s\n", name, (int)geteuid(), effective, permitted);
  return 0;
}
