/* confine-prestart: starts the helper as the `confine run` process starts, before the .NET runtime.
 *
 * The command spends its first two milliseconds or so starting the runtime and reading its
 * command line and policy, and only then would it spawn the helper, which would then pay for its
 * own start. This constructor is linked into the NativeAOT command and runs before the runtime
 * does: it starts the helper at once, on the same descriptors HelperProcess.Spawn gives it, except
 * that the setup plan is a pipe the helper waits on. The helper's start then overlaps the
 * runtime's. The C# side takes the started helper (confine_take_prestarted_helper), writes
 * PLAN_PIPE_START into the pipe once its runtime is up, which lets the helper make the sandbox's
 * network namespace, and the plan when it has one; when the command line turns out to ask for something
 * else, it closes the pipe, and the helper ends without a word.
 *
 * Nothing here decides anything about the sandbox: which helper (the same lookup as the C# side,
 * which checks that the paths agree), its descriptors and signals are fixed, and the plan arrives
 * as before. For every command, run or not, the constructor also opens /dev/null onto a closed
 * descriptor 0-2 and restores SIGCHLD's default action (see sanitize_process).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "plan.h"

/* Read by the C# side (HelperProcess.PrestartedHelper): keep the layout in step. */
struct prestarted_helper {
  int32_t pid;
  int32_t stdin_write;
  int32_t stdout_read;
  int32_t stderr_read;
  int32_t plan_write;
  int32_t report;
  int32_t lifeline_write;
  char path[PATH_MAX];
};

static struct prestarted_helper prestarted = { .pid = -1 };

/* The helper beside this executable, unless CONFINE_HELPER names another: HelperProcess.Path. */
static int find_helper(char *path, size_t size) {
  const char *chosen = getenv("CONFINE_HELPER");
  if (chosen != NULL && chosen[0] != '\0') {
    if (strlen(chosen) >= size)
      return -1;
    strcpy(path, chosen);
    return 0;
  }
  static const char name[] = "confine-helper";
  ssize_t n = readlink("/proc/self/exe", path, size - sizeof name);
  if (n <= 0 || (size_t)n >= size - sizeof name)
    return -1;
  path[n] = '\0';
  char *slash = strrchr(path, '/');
  if (slash == NULL)
    return -1;
  memcpy(slash + 1, name, sizeof name);
  return 0;
}

/* Whatever the caller left, the command starts with descriptors 0-2 open and SIGCHLD at its default
 * action. A closed one of 0-2 would be taken by the next descriptor opened (a pipe of this file,
 * or one the runtime opens), and what the command writes to its stdout or stderr would go there;
 * an ignored SIGCHLD makes the kernel reap children itself, so no waitpid could collect a helper's
 * status. /dev/null takes a closed stream's place, as bubblewrap and crun do. */
static void sanitize_process(void) {
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) < 0) {
      int null = open("/dev/null", O_RDWR);
      if (null >= 0 && null != fd) {
        dup2(null, fd);
        close(null);
      }
    }
  }
  struct sigaction action = { .sa_handler = SIG_DFL };
  struct sigaction previous;
  if (sigaction(SIGCHLD, NULL, &previous) == 0 && previous.sa_handler == SIG_IGN)
    sigaction(SIGCHLD, &action, NULL);
}

static void close_pair(int pair[2]) {
  if (pair[0] >= 0)
    close(pair[0]);
  if (pair[1] >= 0)
    close(pair[1]);
}

/* glibc calls the constructors of the executable with main's arguments. */
__attribute__((constructor)) static void prestart_helper(int argc, char **argv, char **envp) {
  (void)envp;
  sanitize_process();
  if (argc < 2 || strcmp(argv[1], "run") != 0)
    return;
  if (find_helper(prestarted.path, sizeof prestarted.path) < 0)
    return;

  /* The helper's ends first, its fd 0 to FD_LIFELINE in order; each pair's other end stays here. */
  int stdin_pipe[2] = { -1, -1 }, stdout_pipe[2] = { -1, -1 }, stderr_pipe[2] = { -1, -1 };
  int plan_pipe[2] = { -1, -1 }, report[2] = { -1, -1 }, lifeline[2] = { -1, -1 };
  if (pipe2(stdin_pipe, O_CLOEXEC) < 0 || pipe2(stdout_pipe, O_CLOEXEC) < 0 ||
      pipe2(stderr_pipe, O_CLOEXEC) < 0 || pipe2(plan_pipe, O_CLOEXEC) < 0 ||
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, report) < 0 ||
      pipe2(lifeline, O_CLOEXEC) < 0)
    goto give_up;
  int *theirs[] = { &stdin_pipe[0], &stdout_pipe[1], &stderr_pipe[1], &plan_pipe[0], &report[1], &lifeline[0] };
  const int count = (int)(sizeof theirs / sizeof theirs[0]);
  _Static_assert(FD_PLAN == 3 && FD_REPORT == 4 && FD_LIFELINE == 5, "descriptor order");

  /* Each dup2 below writes one target, 0 to 5 in turn, and this early the new descriptors are
   * among those numbers: a source would be overwritten before its own turn. Move them above. */
  for (int i = 0; i < count; i++) {
    int moved = fcntl(*theirs[i], F_DUPFD_CLOEXEC, FD_LIFELINE + 1);
    if (moved < 0)
      goto give_up;
    close(*theirs[i]);
    *theirs[i] = moved;
  }

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  if (posix_spawn_file_actions_init(&actions) != 0)
    goto give_up;
  if (posix_spawnattr_init(&attributes) != 0) {
    posix_spawn_file_actions_destroy(&actions);
    goto give_up;
  }
  int failed = 0;
  for (int target = 0; target < count; target++)
    failed |= posix_spawn_file_actions_adddup2(&actions, *theirs[target], target);
  failed |= posix_spawn_file_actions_addclosefrom_np(&actions, FD_LIFELINE + 1);
  /* The helper starts from default signal actions and an empty mask, whatever the caller left. */
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  failed |= posix_spawnattr_setsigmask(&attributes, &none);
  failed |= posix_spawnattr_setsigdefault(&attributes, &all);
  failed |= posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  char *helper_argv[] = { "confine-helper", NULL };
  char *helper_envp[] = { NULL };
  pid_t pid = -1;
  if (failed == 0 && posix_spawn(&pid, prestarted.path, &actions, &attributes, helper_argv, helper_envp) != 0)
    pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (pid < 0)
    goto give_up;

  for (int i = 0; i < count; i++)
    close(*theirs[i]);
  prestarted.pid = pid;
  prestarted.stdin_write = stdin_pipe[1];
  prestarted.stdout_read = stdout_pipe[0];
  prestarted.stderr_read = stderr_pipe[0];
  prestarted.plan_write = plan_pipe[1];
  prestarted.report = report[0];
  prestarted.lifeline_write = lifeline[1];
  return;

give_up:
  /* The C# side spawns the helper itself, as it does without this head start. */
  close_pair(stdin_pipe);
  close_pair(stdout_pipe);
  close_pair(stderr_pipe);
  close_pair(plan_pipe);
  close_pair(report);
  close_pair(lifeline);
}

/* Hands the started helper over, once: 1 when there is one (its descriptors now belong to the
 * caller), 0 when none was started or it was taken already. */
int confine_take_prestarted_helper(struct prestarted_helper *out) {
  if (prestarted.pid < 0)
    return 0;
  *out = prestarted;
  prestarted.pid = -1;
  return 1;
}
