/* confine-helper: carries out a sandbox plan between clone() and execve().
 *
 * Confine's C# side decides everything and writes it as a plan (see plan.h). This program only
 * acts on it, in a fixed order, and reports each failure as data on the report socket. It runs as
 * three processes:
 *
 *   outer    in the caller's namespaces. Reads the plan, clones the init into new namespaces
 *            (before the plan has arrived, when Confine started this helper before it knew the
 *            plan), writes its id maps, reports its pid and sends it the plan, then waits for it
 *            or for the caller's death (EOF on the lifeline), in which case it kills the init.
 *   init     PID 1 of the new PID namespace. Builds the root filesystem, pivots into it, waits
 *            for the command plan, joins the run's cgroups, forks the command, reaps every orphan
 *            and reports the command's wait status and usage. When it exits, the kernel kills
 *            whatever is left in the namespace.
 *   command  drops every privilege, loads the seccomp filter last, and executes the program.
 *
 * Descriptors at start: 0-2 the command's stdio, FD_PLAN the setup plan (a memfd, or a pipe to
 * read to its end when the helper was started before its plan was known), FD_REPORT a
 * SOCK_SEQPACKET socket for reports, FD_LIFELINE the read end of a pipe whose write end only the
 * caller holds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <grp.h>
#include <time.h>
#include <unistd.h>

#include "plan.h"

#define STAGING_NEW_ROOT "/newroot"
#define STAGING_OLD_ROOT "/oldroot"
#define MAX_PATH 4096
#define MAX_MOUNTS 256
#define MAX_ARGS 4096
#define MAX_LANDLOCK_RULES 256
#define MAX_CGROUP_TASKS 16

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SECBIT_NOROOT
#define SECBIT_NOROOT (1 << 0)
#define SECBIT_NOROOT_LOCKED (1 << 1)
#define SECBIT_NO_SETUID_FIXUP (1 << 2)
#define SECBIT_NO_SETUID_FIXUP_LOCKED (1 << 3)
#define SECBIT_KEEP_CAPS_LOCKED (1 << 5)
#endif

struct mount_entry {
  struct plan_mount head;
  int source_fd; /* bind sources, opened by the init before it changes its ids */
  const char *source;
  const char *target;
  const char *data;
};

struct landlock_rule {
  uint64_t access;
  const char *path;
};

struct plan {
  uint32_t clone_flags;
  const char *uid_map;
  const char *gid_map;
  bool setgroups_deny;
  const char *base_dir;
  const char *rootfs_options;
  struct mount_entry mounts[MAX_MOUNTS];
  size_t mount_count;
  const char *hostname;
  bool loopback_up;
  const char *workdir;
  char *argv[MAX_ARGS + 1];
  size_t argc;
  char *envp[MAX_ARGS + 1];
  size_t envc;
  struct plan_rlimit rlimits[RLIM_NLIMITS];
  size_t rlimit_count;
  struct plan_user user;
  bool nested_userns;
  uint32_t seccomp_flags;
  const struct sock_filter *seccomp_program;
  size_t seccomp_length;
  bool landlock;
  struct plan_landlock landlock_ruleset;
  struct landlock_rule landlock_rules[MAX_LANDLOCK_RULES];
  size_t landlock_rule_count;
  const char *cgroup_tasks[MAX_CGROUP_TASKS];
  int cgroup_tasks_fds[MAX_CGROUP_TASKS]; /* from the command plan's message, in record order */
  size_t cgroup_tasks_count;
  size_t cgroup_tasks_fd_count;
};

static struct plan plan;

/* ---- Reporting ------------------------------------------------------------------------------ */

static int64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void send_report(const struct report *r) {
  /* A lost report would turn a clear error into a vague one, but there is nobody left to tell if
   * the socket itself is gone, so the result is deliberately ignored. */
  ssize_t ignored = send(FD_REPORT, r, sizeof *r, MSG_NOSIGNAL);
  (void)ignored;
}

/* The outer process's init until it is released; -1 in every other process and afterwards. */
static pid_t unreleased_init = -1;
static int unreleased_init_pidfd = -1;

/* Kills a child through its pidfd (no pid reuse race) and reaps it. */
static void kill_and_reap(pid_t pid, int pidfd) {
  syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
}

/* Reports a failed step with errno `err` and ends this process. Every failure path ends here. */
__attribute__((noreturn, format(printf, 3, 4))) static void
fail(enum step step, int err, const char *format, ...) {
  struct report r = { .type = REPORT_ERROR, .step = step, .err = err, .time_ns = monotonic_ns() };
  va_list args;
  va_start(args, format);
  vsnprintf(r.detail, sizeof r.detail, format, args);
  va_end(args);
  send_report(&r);
  /* Its death signal would end an init that was never released too, but only after this process
   * is gone and reaped: the caller could see it still there. */
  if (unreleased_init > 0)
    kill_and_reap(unreleased_init, unreleased_init_pidfd);
  _exit(125);
}

/* ---- Plan parsing --------------------------------------------------------------------------- */

static const char *plan_string(const uint8_t *payload, uint32_t length, const char *what) {
  if (length == 0 || payload[length - 1] != '\0')
    fail(STEP_READ_PLAN, EINVAL, "%s is not a NUL-terminated string", what);
  return (const char *)payload;
}

static void parse_mount(const uint8_t *payload, uint32_t length) {
  if (plan.mount_count == MAX_MOUNTS)
    fail(STEP_READ_PLAN, E2BIG, "more than %d mounts", MAX_MOUNTS);
  if (length < sizeof(struct plan_mount))
    fail(STEP_READ_PLAN, EINVAL, "short mount record");

  struct mount_entry *m = &plan.mounts[plan.mount_count++];
  memcpy(&m->head, payload, sizeof m->head);

  /* Three NUL-terminated strings follow: source, target, data. */
  const char *strings[3];
  const uint8_t *p = payload + sizeof m->head;
  const uint8_t *end = payload + length;
  for (int i = 0; i < 3; i++) {
    const uint8_t *nul = memchr(p, '\0', (size_t)(end - p));
    if (nul == NULL)
      fail(STEP_READ_PLAN, EINVAL, "mount record %zu is malformed", plan.mount_count);
    strings[i] = (const char *)p;
    p = nul + 1;
  }
  m->source = strings[0];
  m->target = strings[1];
  m->data = strings[2];
}

static void parse_landlock(const uint8_t *payload, uint32_t length) {
  if (length < sizeof plan.landlock_ruleset)
    fail(STEP_READ_PLAN, EINVAL, "short landlock record");
  plan.landlock = true;
  memcpy(&plan.landlock_ruleset, payload, sizeof plan.landlock_ruleset);
  const uint8_t *p = payload + sizeof plan.landlock_ruleset;
  const uint8_t *end = payload + length;
  while (p < end) {
    if (plan.landlock_rule_count == MAX_LANDLOCK_RULES)
      fail(STEP_READ_PLAN, E2BIG, "more than %d landlock rules", MAX_LANDLOCK_RULES);
    struct landlock_rule *rule = &plan.landlock_rules[plan.landlock_rule_count++];
    if ((size_t)(end - p) < sizeof rule->access + 1)
      fail(STEP_READ_PLAN, EINVAL, "truncated landlock rule");
    memcpy(&rule->access, p, sizeof rule->access);
    p += sizeof rule->access;
    const uint8_t *nul = memchr(p, '\0', (size_t)(end - p));
    if (nul == NULL)
      fail(STEP_READ_PLAN, EINVAL, "landlock rule path is not NUL-terminated");
    rule->path = (const char *)p;
    p = nul + 1;
  }
}

static void parse_plan(const uint8_t *buffer, size_t size) {
  uint32_t header[2];
  if (size < sizeof header)
    fail(STEP_READ_PLAN, EINVAL, "plan is %zu bytes, shorter than its header", size);
  memcpy(header, buffer, sizeof header);
  if (header[0] != PLAN_MAGIC)
    fail(STEP_READ_PLAN, EINVAL, "plan has a bad magic number 0x%08x", header[0]);
  if (header[1] != PLAN_VERSION)
    fail(STEP_READ_PLAN, EPROTO, "plan version %u, this helper reads version %u", header[1],
         PLAN_VERSION);

  size_t offset = sizeof header;
  while (offset < size) {
    uint32_t record[2];
    if (size - offset < sizeof record)
      fail(STEP_READ_PLAN, EINVAL, "truncated record header at offset %zu", offset);
    memcpy(record, buffer + offset, sizeof record);
    offset += sizeof record;
    uint32_t type = record[0], length = record[1];
    if (length > size - offset)
      fail(STEP_READ_PLAN, EINVAL, "record %u at offset %zu overruns the plan", type, offset);
    const uint8_t *payload = buffer + offset;
    offset += length;

    switch (type) {
    case PLAN_CLONE_FLAGS:
      if (length != sizeof plan.clone_flags)
        fail(STEP_READ_PLAN, EINVAL, "clone flags record has length %u", length);
      memcpy(&plan.clone_flags, payload, sizeof plan.clone_flags);
      break;
    case PLAN_UID_MAP: plan.uid_map = plan_string(payload, length, "uid map"); break;
    case PLAN_GID_MAP: plan.gid_map = plan_string(payload, length, "gid map"); break;
    case PLAN_SETGROUPS_DENY: plan.setgroups_deny = true; break;
    case PLAN_BASE_DIR: plan.base_dir = plan_string(payload, length, "base directory"); break;
    case PLAN_ROOTFS: plan.rootfs_options = plan_string(payload, length, "rootfs options"); break;
    case PLAN_MOUNT: parse_mount(payload, length); break;
    case PLAN_HOSTNAME: plan.hostname = plan_string(payload, length, "hostname"); break;
    case PLAN_LOOPBACK_UP: plan.loopback_up = true; break;
    case PLAN_WORKDIR: plan.workdir = plan_string(payload, length, "working directory"); break;
    case PLAN_ARG:
      if (plan.argc == MAX_ARGS)
        fail(STEP_READ_PLAN, E2BIG, "more than %d arguments", MAX_ARGS);
      plan.argv[plan.argc++] = (char *)plan_string(payload, length, "argument");
      break;
    case PLAN_ENV:
      if (plan.envc == MAX_ARGS)
        fail(STEP_READ_PLAN, E2BIG, "more than %d environment entries", MAX_ARGS);
      plan.envp[plan.envc++] = (char *)plan_string(payload, length, "environment entry");
      break;
    case PLAN_RLIMIT:
      if (length != sizeof(struct plan_rlimit) || plan.rlimit_count == RLIM_NLIMITS)
        fail(STEP_READ_PLAN, EINVAL, "bad rlimit record");
      memcpy(&plan.rlimits[plan.rlimit_count++], payload, sizeof(struct plan_rlimit));
      break;
    case PLAN_USER:
      if (length != sizeof plan.user)
        fail(STEP_READ_PLAN, EINVAL, "bad user record");
      memcpy(&plan.user, payload, sizeof plan.user);
      break;
    case PLAN_NESTED_USERNS: plan.nested_userns = true; break;
    case PLAN_SECCOMP:
      if (length < sizeof(uint32_t) || (length - sizeof(uint32_t)) % sizeof(struct sock_filter))
        fail(STEP_READ_PLAN, EINVAL, "seccomp record has length %u", length);
      memcpy(&plan.seccomp_flags, payload, sizeof(uint32_t));
      plan.seccomp_program = (const struct sock_filter *)(payload + sizeof(uint32_t));
      plan.seccomp_length = (length - sizeof(uint32_t)) / sizeof(struct sock_filter);
      break;
    case PLAN_LANDLOCK: parse_landlock(payload, length); break;
    case PLAN_CGROUP_TASKS:
      if (plan.cgroup_tasks_count == MAX_CGROUP_TASKS)
        fail(STEP_READ_PLAN, E2BIG, "more than %d cgroup tasks files", MAX_CGROUP_TASKS);
      plan.cgroup_tasks[plan.cgroup_tasks_count++] =
          plan_string(payload, length, "cgroup tasks file");
      break;
    default:
      fail(STEP_READ_PLAN, EPROTO, "unknown record type %u", type);
    }
  }

}

/* Reads a pipe or stream socket to its end; NULL when it ended before its first byte. */
static uint8_t *read_to_end(int fd, size_t *size, const char *what) {
  size_t capacity = 16384, done = 0;
  uint8_t *buffer = malloc(capacity);
  for (;;) {
    if (buffer == NULL)
      fail(STEP_READ_PLAN, ENOMEM, "buffer for %s", what);
    ssize_t n = read(fd, buffer + done, capacity - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      fail(STEP_READ_PLAN, errno, "reading %s", what);
    if (n == 0)
      break;
    done += (size_t)n;
    if (done == capacity) {
      if (capacity >= (64 << 20))
        fail(STEP_READ_PLAN, EINVAL, "%s larger than %d bytes", what, 64 << 20);
      capacity *= 2;
      buffer = realloc(buffer, capacity);
    }
  }
  close(fd);
  *size = done;
  if (done == 0) {
    free(buffer);
    return NULL;
  }
  return buffer;
}

/* Reads a plan from a memfd; the setup plan may come on a pipe instead (see main). */
static uint8_t *read_plan(int fd, size_t *size) {
  struct stat st;
  if (fstat(fd, &st) < 0)
    fail(STEP_READ_PLAN, errno, "fstat of the plan descriptor");
  if (st.st_size <= 0 || st.st_size > (64 << 20))
    fail(STEP_READ_PLAN, EINVAL, "plan size %lld", (long long)st.st_size);

  /* The buffer lives as long as the process: every string in `plan` points into it. */
  uint8_t *buffer = malloc((size_t)st.st_size);
  if (buffer == NULL)
    fail(STEP_READ_PLAN, ENOMEM, "plan buffer");
  size_t done = 0;
  while (done < (size_t)st.st_size) {
    ssize_t n = pread(fd, buffer + done, (size_t)st.st_size - done, (off_t)done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      fail(STEP_READ_PLAN, n < 0 ? errno : EIO, "reading the plan");
    done += (size_t)n;
  }
  close(fd);
  *size = done;
  return buffer;
}

/* Waits for the command plan: a PLAN_MAGIC message carrying a memfd, then a descriptor for each
 * PLAN_CGROUP_TASKS record. End-of-file means the caller gave this sandbox up before using it. */
static void receive_command_plan(void) {
  struct report ready = { .type = REPORT_READY, .time_ns = monotonic_ns() };
  send_report(&ready);

  uint32_t magic = 0;
  struct iovec iov = { .iov_base = &magic, .iov_len = sizeof magic };
  char control[CMSG_SPACE(sizeof(int) * (1 + MAX_CGROUP_TASKS))];
  struct msghdr message = {
    .msg_iov = &iov,
    .msg_iovlen = 1,
    .msg_control = control,
    .msg_controllen = sizeof control,
  };
  ssize_t n;
  do
    n = recvmsg(FD_REPORT, &message, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n == 0)
    _exit(0);
  struct cmsghdr *header = CMSG_FIRSTHDR(&message);
  if (n != (ssize_t)sizeof magic || magic != PLAN_MAGIC || header == NULL ||
      (message.msg_flags & MSG_CTRUNC) || header->cmsg_level != SOL_SOCKET ||
      header->cmsg_type != SCM_RIGHTS || header->cmsg_len < CMSG_LEN(sizeof(int)))
    fail(STEP_COMMAND_PLAN, n < 0 ? errno : EPROTO, "malformed command plan message");
  int fd;
  memcpy(&fd, CMSG_DATA(header), sizeof fd);
  size_t extra = (header->cmsg_len - CMSG_LEN(sizeof(int))) / sizeof(int);
  memcpy(plan.cgroup_tasks_fds, CMSG_DATA(header) + sizeof(int), extra * sizeof(int));
  plan.cgroup_tasks_fd_count = extra;

  size_t size;
  uint8_t *buffer = read_plan(fd, &size);
  parse_plan(buffer, size);
  if (plan.argc == 0 || plan.workdir == NULL)
    fail(STEP_COMMAND_PLAN, EINVAL, "command plan has no command or working directory");
  if (plan.cgroup_tasks_fd_count != plan.cgroup_tasks_count)
    fail(STEP_COMMAND_PLAN, EPROTO, "command plan names %zu cgroup tasks files but came with %zu",
         plan.cgroup_tasks_count, plan.cgroup_tasks_fd_count);
}

/* Moves the init into the run's v1 cgroups, before anything of the command exists. Writing 0 to
 * a `tasks` file moves only the writing thread, which the kernel does without taking
 * cgroup_threadgroup_rwsem for writing (cgroup_procs_write_start); moving a process by pid through
 * cgroup.procs takes it, and the first writer after an idle spell waits for an RCU grace period:
 * 8 to 30 ms here, more than the rest of a run. The init is single-threaded, so its thread is the
 * whole process. The kernel checks the credentials of whoever opened the file, the caller. */
static void join_cgroups(void) {
  for (size_t i = 0; i < plan.cgroup_tasks_count; i++) {
    ssize_t n;
    do
      n = write(plan.cgroup_tasks_fds[i], "0", 1);
    while (n < 0 && errno == EINTR);
    if (n != 1)
      fail(STEP_CGROUP_JOIN, n < 0 ? errno : EIO, "%s", plan.cgroup_tasks[i]);
    close(plan.cgroup_tasks_fds[i]);
  }
}

/* ---- Small file helpers --------------------------------------------------------------------- */

static int write_file(const char *path, const char *content) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  size_t length = strlen(content);
  ssize_t n = write(fd, content, length);
  int saved = errno;
  close(fd);
  if (n != (ssize_t)length) {
    errno = n < 0 ? saved : EIO;
    return -1;
  }
  return 0;
}

/* Creates every missing directory of `path`, like mkdir -p. */
static int make_directories(const char *path, mode_t mode) {
  char buffer[MAX_PATH];
  if (snprintf(buffer, sizeof buffer, "%s", path) >= (int)sizeof buffer) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *p = buffer + 1; *p != '\0'; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buffer, mode) < 0 && errno != EEXIST)
      return -1;
    *p = '/';
  }
  if (mkdir(buffer, mode) < 0 && errno != EEXIST)
    return -1;
  return 0;
}

/* Opens, as an O_PATH descriptor, `target` (an absolute path inside the sandbox) beneath the new
 * root, first creating whatever is missing: directories, and for the last component a directory or,
 * with `file`, an empty file. Every lookup resolves symbolic links as if the new root were /
 * (RESOLVE_IN_ROOT). A target can lie inside a writable bind of a host directory, where an earlier
 * sandbox may have left a link such as /oldroot/home/user: followed the ordinary way during setup,
 * it would lead to the host's files, and the mount point would be made and the mount placed there.
 * Returns -1 with errno set. */
static int open_target(const char *target, bool file) {
  char path[MAX_PATH];
  if (snprintf(path, sizeof path, "%s", target) >= (int)sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  int root = open(STAGING_NEW_ROOT, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0)
    return -1;
  struct open_how how = {
    .flags = O_PATH | O_CLOEXEC,
    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
  };

  int fd = -1;
  char *end = path;
  while (*end == '/')
    end++;
  while (*end != '\0') {
    char *next = strchr(end, '/');
    bool last = next == NULL;
    if (!last)
      *next = '\0';
    fd = (int)syscall(SYS_openat2, root, path, &how, sizeof how);
    if (fd < 0 && errno == ENOENT) {
      /* Made in the directory the lookup of the parent reached, under the name the plan gave. */
      char *slash = strrchr(path, '/');
      const char *name = slash + 1;
      int parent;
      if (slash == path) {
        parent = dup(root);
      } else {
        *slash = '\0';
        parent = (int)syscall(SYS_openat2, root, path, &how, sizeof how);
        *slash = '/';
      }
      if (parent < 0) {
        close(root);
        return -1;
      }
      int made;
      if (last && file) {
        made = openat(parent, name, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
        if (made >= 0)
          close(made);
      } else {
        made = mkdirat(parent, name, 0755);
      }
      int saved = errno;
      close(parent);
      if (made < 0 && saved != EEXIST) {
        close(root);
        errno = saved;
        return -1;
      }
      fd = (int)syscall(SYS_openat2, root, path, &how, sizeof how);
    }
    if (fd < 0) {
      int saved = errno;
      close(root);
      errno = saved;
      return -1;
    }
    if (last)
      break;
    close(fd);
    fd = -1;
    *next = '/';
    end = next + 1;
    while (*end == '/')
      end++;
  }
  close(root);
  if (fd < 0) /* the target is the root itself */
    fd = open(STAGING_NEW_ROOT, O_PATH | O_DIRECTORY | O_CLOEXEC);
  return fd;
}

/* The path through /proc by which mount(2) reaches what descriptor `fd` names. */
static void fd_path(char out[64], int fd) {
  snprintf(out, 64, STAGING_OLD_ROOT "/proc/self/fd/%d", fd);
}

/* ---- Mounts --------------------------------------------------------------------------------- */

/* The flags of the mount at `path` that an unprivileged remount must keep. The kernel locks the
 * nosuid, nodev, noexec and atime flags of mounts inherited from a more privileged namespace, and
 * a remount that drops one fails with EPERM. */
static unsigned long locked_flags(const char *path) {
  struct statvfs sv;
  if (statvfs(path, &sv) < 0)
    return 0;
  unsigned long flags = 0;
  if (sv.f_flag & ST_NOSUID) flags |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) flags |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) flags |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) flags |= MS_RELATIME;
  return flags;
}

static int remount_bind(const char *path, unsigned long flags) {
  return mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | flags | locked_flags(path), NULL);
}

static void join_path(char *out, const char *prefix, const char *path) {
  if (snprintf(out, MAX_PATH, "%s%s", prefix, path) >= MAX_PATH)
    fail(STEP_MOUNT, ENAMETOOLONG, "%s", path);
}

static void mount_bind(const struct mount_entry *m) {
  if (m->source_fd < 0)
    return; /* an optional source that the host lacks */
  struct stat st;
  if (fstat(m->source_fd, &st) < 0)
    fail(STEP_MOUNT, errno, "bind source %s", m->source);

  /* The source is reached through the descriptor the init opened before it took its sandbox
   * ids: those ids may not be allowed to look the path up. */
  char source[64];
  fd_path(source, m->source_fd);
  int point = open_target(m->target, !S_ISDIR(st.st_mode));
  if (point < 0)
    fail(STEP_MOUNT, errno, "mount point %s", m->target);
  char at[64];
  fd_path(at, point);
  if (mount(source, at, NULL, MS_BIND | MS_REC, NULL) < 0)
    fail(STEP_MOUNT, errno, "bind %s to %s", m->source, m->target);
  close(point);

  /* The descriptor names what lies beneath the new mount; looked up again, the path reaches it. */
  point = open_target(m->target, false);
  if (point < 0)
    fail(STEP_MOUNT, errno, "mount point %s after the bind", m->target);
  fd_path(at, point);

  unsigned long flags = MS_NOSUID;
  if (!(m->head.flags & MOUNT_FLAG_WRITABLE))
    flags |= MS_RDONLY;
  if (!(m->head.flags & MOUNT_FLAG_DEVICES))
    flags |= MS_NODEV;
  if (remount_bind(at, flags) < 0)
    fail(STEP_MOUNT, errno, "remount of %s with its restrictions", m->target);
  close(point);
}

static void mount_mask(const struct mount_entry *m, const char *target) {
  struct stat st;
  if (lstat(target, &st) < 0) {
    if (errno == ENOENT)
      return; /* nothing to hide */
    fail(STEP_MOUNT, errno, "mask %s", m->target);
  }
  if (S_ISDIR(st.st_mode)) {
    if (mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=4k,nr_inodes=1,mode=0555") < 0)
      fail(STEP_MOUNT, errno, "mask directory %s", m->target);
    return;
  }
  if (mount(STAGING_OLD_ROOT "/dev/null", target, NULL, MS_BIND, NULL) < 0)
    fail(STEP_MOUNT, errno, "mask file %s", m->target);
  /* Device nodes stay allowed on this one mount so that reading the mask gives an empty file,
   * as it does in other container runtimes, rather than an error a program may not expect. */
  if (remount_bind(target, MS_RDONLY | MS_NOSUID | MS_NOEXEC) < 0)
    fail(STEP_MOUNT, errno, "remount of the mask on %s", m->target);
}

static void apply_mount(const struct mount_entry *m) {
  char target[MAX_PATH];
  join_path(target, STAGING_NEW_ROOT, m->target);

  switch (m->head.op) {
  case MOUNT_OP_BIND:
    mount_bind(m);
    break;
  case MOUNT_OP_TMPFS: {
    int point = open_target(m->target, false);
    if (point < 0)
      fail(STEP_MOUNT, errno, "mount point %s", m->target);
    char at[64];
    fd_path(at, point);
    if (mount("tmpfs", at, "tmpfs", (unsigned long)m->head.mount_flags, m->data) < 0)
      fail(STEP_MOUNT, errno, "tmpfs on %s (%s)", m->target, m->data);
    close(point);
    break;
  }
  case MOUNT_OP_PROC:
    if (make_directories(target, 0555) < 0)
      fail(STEP_MOUNT, errno, "mount point %s", m->target);
    if (mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
      fail(STEP_MOUNT, errno, "proc on %s", m->target);
    break;
  case MOUNT_OP_SYMLINK:
    if (symlink(m->source, target) < 0 && errno != EEXIST)
      fail(STEP_MOUNT, errno, "symlink %s -> %s", m->target, m->source);
    break;
  case MOUNT_OP_MKDIR: {
    int made = open_target(m->target, false);
    if (made < 0)
      fail(STEP_MOUNT, errno, "directory %s", m->target);
    close(made);
    break;
  }
  case MOUNT_OP_MASK:
    mount_mask(m, target);
    break;
  case MOUNT_OP_READONLY:
    if (mount(target, target, NULL, MS_BIND | MS_REC, NULL) < 0)
      fail(STEP_MOUNT, errno, "bind of %s onto itself", m->target);
    if (remount_bind(target, MS_RDONLY | MS_NOSUID | MS_NODEV) < 0)
      fail(STEP_MOUNT, errno, "read-only remount of %s", m->target);
    break;
  default:
    fail(STEP_MOUNT, EPROTO, "unknown mount operation %u", m->head.op);
  }
}

/* A recursive bind carries the source's submounts along with their own flags, so a read-only
 * bind of a tree with a writable submount would leave that submount writable. Before the binds,
 * while the init still has the caller's ids (a remount needs a path lookup through the host's
 * directories), every mount beneath a read-only source is remounted read-only in the init's own
 * copy of the host's mount table; the binds then copy them read-only. The host is not touched. */
/* Whether `path` lies strictly beneath the directory `parent`. */
static bool below(const char *path, const char *parent) {
  size_t length = strlen(parent);
  if (strncmp(path, parent, length) != 0)
    return false;
  if (parent[length - 1] == '/')
    return path[length] != '\0';
  return path[length] == '/' && path[length + 1] != '\0';
}

static void readonly_source_submounts(void) {
  bool wanted = false;
  for (size_t i = 0; i < plan.mount_count; i++)
    wanted |= (plan.mounts[i].head.flags & MOUNT_FLAG_SUBMOUNTS) != 0;
  if (!wanted)
    return;

  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL)
    fail(STEP_SUBMOUNTS_READONLY, errno, "open of /proc/self/mountinfo");
  char line[MAX_PATH + 512];
  while (fgets(line, sizeof line, f) != NULL) {
    /* Fields: id parent major:minor root mount-point options ... */
    char mount_point[MAX_PATH];
    if (sscanf(line, "%*d %*d %*s %*s %4095s", mount_point) != 1)
      continue;
    for (size_t i = 0; i < plan.mount_count; i++) {
      const struct mount_entry *m = &plan.mounts[i];
      if (m->head.op != MOUNT_OP_BIND || (m->head.flags & MOUNT_FLAG_WRITABLE) ||
          !(m->head.flags & MOUNT_FLAG_SUBMOUNTS) || !below(mount_point, m->source))
        continue;
      /* mountinfo escapes spaces and the like as octal; such a mount cannot be named by this
       * path, so it is refused rather than left writable. */
      if (strchr(mount_point, '\\') != NULL)
        fail(STEP_SUBMOUNTS_READONLY, EINVAL, "submount with an escaped name under %s", m->source);
      if (remount_bind(mount_point, MS_RDONLY | MS_NOSUID | MS_NODEV) < 0)
        fail(STEP_SUBMOUNTS_READONLY, errno, "read-only remount of %s", mount_point);
      break;
    }
  }
  fclose(f);
}

/* The old root, which pivot_root(".", ".") left stacked on top of the new one, is detached by the
 * outer process, not here.
 *
 * umount2 unhashes the mounts at once but then waits for an RCU grace period before it returns
 * (about 2 ms here, most of a sandbox's setup time). The outer process makes that call from
 * inside the sandbox's mount namespace (see detach_for_init), and the init, before it forks the
 * command, waits until "/.." resolves to the new root. It must be "/..": a lookup of "/" starts at the process's root
 * and never sees what is stacked on it, while ".." at the root crosses into the stacked mount, so
 * until the detach has happened "/.." still reaches the old root and every host path beneath it.
 * A process of the sandbox's own could make the call too, but the init's exit would then wait for
 * its grace period: a PID namespace ends only when its last task has. */
static int pivot_fd = -1;
static dev_t new_root_dev;

static void ask_for_old_root_detach(void) {
  if (write(pivot_fd, "p", 1) != 1)
    fail(STEP_PIVOT_ROOT, errno, "asking for the old root's detach");
  close(pivot_fd);
}

/* The init asks for the detach as soon as the new root is in place and waits for it only before
 * the command is forked: what it does in between (host name, loopback, the command plan, the
 * cgroups) looks up no path, so the outer process's round trip overlaps that work instead of
 * adding to it. Nothing else runs in the sandbox until the command, which starts after this. */
static void await_old_root_detach(void) {
  for (;;) {
    struct stat root;
    if (stat("/..", &root) == 0 && root.st_dev == new_root_dev)
      break;
    /* The outer process kills the init if the detach fails, so this loop cannot outlive it. */
    sched_yield();
  }
  if (chdir("/") < 0)
    fail(STEP_PIVOT_ROOT, errno, "chdir to /");
  if (remount_bind("/", MS_RDONLY | MS_NOSUID | MS_NODEV) < 0)
    fail(STEP_ROOT_READONLY, errno, "read-only remount of /");
}

/* Builds the sandbox's root in a staging tmpfs, then makes it the root and drops the host's. */
static void build_root(void) {
  /* Nothing done here may propagate back to the host's mount namespace. */
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    fail(STEP_MOUNT_PRIVATE, errno, "making / private");

  /* A staging tmpfs holds the new root and, after the first pivot, the old one: host paths are
   * then reached as /oldroot/PATH whatever the new root shadows. */
  if (mount("tmpfs", plan.base_dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=16k,nr_inodes=16,mode=0700") < 0)
    fail(STEP_STAGING, errno, "tmpfs on %s", plan.base_dir);
  if (chdir(plan.base_dir) < 0)
    fail(STEP_STAGING, errno, "chdir to %s", plan.base_dir);
  if (mkdir("newroot", 0755) < 0 || mkdir("oldroot", 0755) < 0)
    fail(STEP_STAGING, errno, "staging directories");
  if (syscall(SYS_pivot_root, ".", "oldroot") < 0)
    fail(STEP_STAGING, errno, "pivot_root into the staging tmpfs");
  if (chdir("/") < 0)
    fail(STEP_STAGING, errno, "chdir to the staging root");

  if (mount("tmpfs", STAGING_NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, plan.rootfs_options) < 0)
    fail(STEP_ROOTFS, errno, "tmpfs root (%s)", plan.rootfs_options);

  for (size_t i = 0; i < plan.mount_count; i++)
    apply_mount(&plan.mounts[i]);

  /* pivot_root(".", ".") stacks the staging root on top of the new one; detaching it takes the
   * old root with it, so no host path stays reachable. */
  struct stat new_root;
  if (stat(STAGING_NEW_ROOT, &new_root) < 0)
    fail(STEP_PIVOT_ROOT, errno, "stat of the new root");
  if (chdir(STAGING_NEW_ROOT) < 0)
    fail(STEP_PIVOT_ROOT, errno, "chdir to the new root");
  if (syscall(SYS_pivot_root, ".", ".") < 0)
    fail(STEP_PIVOT_ROOT, errno, "pivot_root into the new root");
  new_root_dev = new_root.st_dev;
  ask_for_old_root_detach();
}

static void bring_up_loopback(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    fail(STEP_LOOPBACK, errno, "socket for lo");
  struct ifreq ifr = { 0 };
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
    fail(STEP_LOOPBACK, errno, "SIOCGIFFLAGS on lo");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
    fail(STEP_LOOPBACK, errno, "SIOCSIFFLAGS on lo");
  close(fd);
}

/* ---- The command ---------------------------------------------------------------------------- */

/* Gives the command its own user namespace in which only its ids exist. An ordinary user can map
 * a single id, which the init needs as root to build the filesystem; this second namespace maps
 * the command's requested ids onto that one. */
static void enter_nested_userns(void) {
  if (unshare(CLONE_NEWUSER) < 0)
    fail(STEP_NESTED_USERNS, errno, "unshare(CLONE_NEWUSER)");
  char map[64];
  if (write_file("/proc/self/setgroups", "deny") < 0)
    fail(STEP_NESTED_USERNS, errno, "/proc/self/setgroups");
  snprintf(map, sizeof map, "%u 0 1\n", plan.user.uid);
  if (write_file("/proc/self/uid_map", map) < 0)
    fail(STEP_NESTED_USERNS, errno, "/proc/self/uid_map");
  snprintf(map, sizeof map, "%u 0 1\n", plan.user.gid);
  if (write_file("/proc/self/gid_map", map) < 0)
    fail(STEP_NESTED_USERNS, errno, "/proc/self/gid_map");
}

static void drop_capabilities(void) {
  /* With no root exception and an empty bounding set, no later execve (of a setuid binary, a
   * binary with file capabilities, or anything as uid 0) can give a capability back. */
  if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                   SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED) < 0)
    fail(STEP_DROP_BOUNDING, errno, "PR_SET_SECUREBITS");
  /* Every capability the kernel knows: up to the first number it refuses as no capability. */
  for (int cap = 0;; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap) == 0)
      continue;
    if (errno == EINVAL && cap > 0)
      break;
    fail(STEP_DROP_BOUNDING, errno, "PR_CAPBSET_DROP %d", cap);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
    fail(STEP_DROP_BOUNDING, errno, "PR_CAP_AMBIENT_CLEAR_ALL");
}

static void clear_capability_sets(void) {
  struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct data[2] = { { 0 } };
  if (syscall(SYS_capset, &header, data) < 0)
    fail(STEP_DROP_CAPS, errno, "capset to empty sets");
}

static void switch_user(void) {
  if (!plan.setgroups_deny && !plan.nested_userns && setgroups(0, NULL) < 0)
    fail(STEP_SETGID, errno, "setgroups([])");
  gid_t gid = plan.user.gid;
  uid_t uid = plan.user.uid;
  if (setresgid(gid, gid, gid) < 0)
    fail(STEP_SETGID, errno, "setresgid(%u)", gid);
  if (setresuid(uid, uid, uid) < 0)
    fail(STEP_SETUID, errno, "setresuid(%u)", uid);
}

static const char *find_env(const char *name) {
  size_t length = strlen(name);
  for (size_t i = 0; i < plan.envc; i++) {
    if (strncmp(plan.envp[i], name, length) == 0 && plan.envp[i][length] == '=')
      return plan.envp[i] + length + 1;
  }
  return NULL;
}

/* Runs argv[0], searched in the plan's PATH when it has no slash, as execvp does; returns the most
 * telling errno when nothing could run. */
static int exec_command(void) {
  const char *name = plan.argv[0];
  if (strchr(name, '/') != NULL) {
    execve(name, plan.argv, plan.envp);
    return errno;
  }

  const char *path = find_env("PATH");
  if (path == NULL)
    path = "/usr/bin:/bin";
  int result = ENOENT;
  for (const char *p = path;; p++) {
    const char *end = strchrnul(p, ':');
    char candidate[MAX_PATH];
    int length = snprintf(candidate, sizeof candidate, "%.*s/%s", (int)(end - p), p, name);
    if (length > 0 && length < (int)sizeof candidate) {
      execve(candidate, plan.argv, plan.envp);
      if (errno == EACCES || errno == ENOEXEC || errno == ETXTBSY)
        result = errno; /* found but not runnable: a better report than ENOENT */
      else if (errno != ENOENT && errno != ENOTDIR && result == ENOENT)
        result = errno;
    }
    if (*end == '\0')
      break;
    p = end;
  }
  return result;
}

/* The kernel's Landlock structures, declared here because the build host's headers may predate
 * the fields of newer ABIs. The helper passes the size that matches the fields it uses. */
struct confine_landlock_ruleset_attr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

struct confine_landlock_path_beneath_attr {
  uint64_t allowed_access;
  int32_t parent_fd;
} __attribute__((packed));

#define CONFINE_LANDLOCK_RULE_PATH_BENEATH 1

/* A second wall under the mount namespace: the command may reach only the paths the policy
 * mounted, with the rights the planner gave each. Paths are resolved inside the sandbox. */
static void apply_landlock(void) {
  if (!plan.landlock)
    return;
  struct confine_landlock_ruleset_attr attr = {
    .handled_access_fs = plan.landlock_ruleset.handled_access_fs,
    .handled_access_net = plan.landlock_ruleset.handled_access_net,
    .scoped = plan.landlock_ruleset.scoped,
  };
  size_t size = attr.scoped ? 24 : attr.handled_access_net ? 16 : 8;
  int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
  if (ruleset < 0)
    fail(STEP_LANDLOCK, errno, "landlock_create_ruleset");

  for (size_t i = 0; i < plan.landlock_rule_count; i++) {
    const struct landlock_rule *rule = &plan.landlock_rules[i];
    int fd = open(rule->path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT)
        continue; /* an optional system path the host lacks */
      fail(STEP_LANDLOCK, errno, "open of %s", rule->path);
    }
    /* A rule on a file may only name rights that apply to files. */
    struct stat st;
    uint64_t access = rule->access;
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
      access &= (1ULL << 0) | (1ULL << 1) | (1ULL << 2) | (1ULL << 14) | (1ULL << 15);
    struct confine_landlock_path_beneath_attr beneath = { .allowed_access = access, .parent_fd = fd };
    if (syscall(SYS_landlock_add_rule, ruleset, CONFINE_LANDLOCK_RULE_PATH_BENEATH, &beneath, 0) < 0)
      fail(STEP_LANDLOCK, errno, "landlock_add_rule for %s", rule->path);
    close(fd);
  }

  if (syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
    fail(STEP_LANDLOCK, errno, "landlock_restrict_self");
  close(ruleset);
}

/* Sends a report with one descriptor riding along as SCM_RIGHTS; false when the send failed. */
static bool send_report_with_fd(const struct report *r, int fd) {
  struct iovec iov = { .iov_base = (void *)r, .iov_len = sizeof *r };
  char control[CMSG_SPACE(sizeof(int))];
  memset(control, 0, sizeof control);
  struct msghdr message = {
    .msg_iov = &iov,
    .msg_iovlen = 1,
    .msg_control = control,
    .msg_controllen = sizeof control,
  };
  struct cmsghdr *header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(header), &fd, sizeof(int));
  return sendmsg(FD_REPORT, &message, MSG_NOSIGNAL) == (ssize_t)sizeof *r;
}

/* Hands the seccomp notification descriptor to the supervisor, which answers every call the
 * filter sends it for the rest of the run. */
static void send_listener(int listener) {
  struct report r = { .type = REPORT_LISTENER, .time_ns = monotonic_ns(), .pid = getpid() };
  if (!send_report_with_fd(&r, listener))
    fail(STEP_SECCOMP, errno, "sending the seccomp listener");
  close(listener);
}

static void load_seccomp(void) {
  if (plan.seccomp_program == NULL)
    return;
  struct sock_fprog program = {
    .len = (unsigned short)plan.seccomp_length,
    .filter = (struct sock_filter *)plan.seccomp_program,
  };
  long result = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, plan.seccomp_flags, &program);
  if (result < 0)
    fail(STEP_SECCOMP, errno, "seccomp(SECCOMP_SET_MODE_FILTER)");
  if (plan.seccomp_flags & SECCOMP_FILTER_FLAG_NEW_LISTENER)
    send_listener((int)result);
}

__attribute__((noreturn)) static void run_command(void) {
  /* Restore what the init changed: the command starts with no signal blocked. The dispositions
   * need no reset: every signal is at its default action from the helper's start (see
   * reset_signals_spawn_ignored), nothing here installs a handler or ignores a signal, and execve
   * would reset a handler anyway; only an ignored signal could have outlived it. */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);

  /* The init made itself undumpable, which this fork inherited; that would leave the command's own
   * /proc/self files owned by a root it cannot act as. execve decides dumpability afresh. */
  prctl(PR_SET_DUMPABLE, 1);

  /* A new session has no controlling terminal, so TIOCSTI cannot reach the caller's. */
  if (setsid() < 0)
    fail(STEP_SETSID, errno, "setsid");
  if (plan.nested_userns)
    enter_nested_userns();

  for (size_t i = 0; i < plan.rlimit_count; i++) {
    struct rlimit limit = { .rlim_cur = plan.rlimits[i].soft, .rlim_max = plan.rlimits[i].hard };
    if (setrlimit((int)plan.rlimits[i].resource, &limit) < 0)
      fail(STEP_RLIMIT, errno, "setrlimit(%u, %llu, %llu)", plan.rlimits[i].resource,
           (unsigned long long)plan.rlimits[i].soft, (unsigned long long)plan.rlimits[i].hard);
  }

  drop_capabilities();
  switch_user();
  clear_capability_sets();

  if (chdir(plan.workdir) < 0)
    fail(STEP_WORKDIR, errno, "working directory %s", plan.workdir);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    fail(STEP_NO_NEW_PRIVS, errno, "PR_SET_NO_NEW_PRIVS");

  /* Only 0-2 may cross execve; the report socket must not, or the command could forge reports. */
  if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
    fail(STEP_EXEC, errno, "close_range");

  apply_landlock();

  struct report r = { .type = REPORT_EXEC, .time_ns = monotonic_ns(), .pid = getpid() };
  send_report(&r);

  load_seccomp();
  int err = exec_command();
  fail(STEP_EXEC, err, "%s", plan.argv[0]);
}

/* ---- Where the init starts ------------------------------------------------------------------ */

/* The kernel wakes a released init on the CPU it judges idlest, often the one where Confine's own
 * thread is busy making the run's cgroups, and a CPU that goes idle does not always pull it over:
 * traced, the init waited up to a few milliseconds to run its first instruction while the outer
 * process's CPU sat idle. The outer process sleeps as soon as it has released the init, so just
 * before, it asks the kernel to run the init on its own CPU; once released, the init takes back
 * every CPU it may use (the cpuset's bounds apply either way), so neither it nor the command stays
 * on one. Not at the clone: the new init is then still queued to run, and moving a queued
 * process makes the caller wait for the move (traced: half a millisecond), while moving one that
 * sleeps, waiting for its release, only updates its mask. */
static cpu_set_t allowed_cpus;
static bool have_allowed_cpus;

static void start_init_here(pid_t init) {
  int cpu = sched_getcpu();
  if (!have_allowed_cpus || cpu < 0)
    return;
  cpu_set_t here;
  CPU_ZERO(&here);
  CPU_SET(cpu, &here);
  /* A refusal (a cpuset without this CPU) costs only the head start. */
  sched_setaffinity(init, sizeof here, &here);
}

static void release_init_cpus(void) {
  if (have_allowed_cpus && sched_setaffinity(0, sizeof allowed_cpus, &allowed_cpus) < 0)
    fail(STEP_CLONE, errno, "restoring the init's CPUs after its start");
}

/* ---- Namespaces ----------------------------------------------------------------------------- */

/* The namespaces every isolation level asks for unless the network is the host's: a user, mount,
 * PID, network, IPC and UTS namespace. */
#define USUAL_CLONE_FLAGS \
  ((uint32_t)(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS))

/* Two namespaces are never part of the clone. The init makes its network namespace itself, first
 * thing: making one costs more than all the others together (~0.5 ms here, registering the
 * loopback device and the per-namespace sysctls), and this way the outer process is not held up
 * meanwhile: it can read the plan and write the id maps. And the init enters its cgroup namespace
 * once it is in its cgroup, so that the sandbox's own cgroup is the root it sees. */
#define LATER_NAMESPACES ((uint32_t)(CLONE_NEWNET | CLONE_NEWCGROUP))

/* The first byte the outer process sends an init: make a network namespace now, or keep the
 * caller's. */
#define INIT_OWN_NETWORK 'n'
#define INIT_CALLERS_NETWORK '-'

/* ---- The init ------------------------------------------------------------------------------- */

static void forward_signal(pid_t command, int sig) {
  /* The command leads its own session and process group; the group gets the signal so a shell's
   * children see it too. */
  if (kill(-command, sig) < 0)
    kill(command, sig);
}

__attribute__((noreturn)) static void supervise(pid_t command, int signal_fd) {
  for (;;) {
    struct signalfd_siginfo info;
    ssize_t n = read(signal_fd, &info, sizeof info);
    if (n < 0 && errno == EINTR)
      continue;
    if (n != (ssize_t)sizeof info)
      fail(STEP_SUPERVISE, n < 0 ? errno : EIO, "signalfd read");

    if (info.ssi_signo != SIGCHLD) {
      forward_signal(command, (int)info.ssi_signo);
      continue;
    }

    /* Reap every child that has ended: the command, and orphans that were reparented here. */
    for (;;) {
      int status;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0)
        break;
      if (pid != command)
        continue;

      struct rusage usage;
      getrusage(RUSAGE_CHILDREN, &usage);
      struct report r = {
        .type = REPORT_EXIT,
        .status = status,
        .time_ns = monotonic_ns(),
        .pid = pid,
        .utime_us = (int64_t)usage.ru_utime.tv_sec * 1000000 + usage.ru_utime.tv_usec,
        .stime_us = (int64_t)usage.ru_stime.tv_sec * 1000000 + usage.ru_stime.tv_usec,
        .maxrss_kb = usage.ru_maxrss,
      };
      send_report(&r);
      /* Leaving ends the namespace: the kernel kills every process still in it. */
      _exit(0);
    }
  }
}

static void open_bind_sources(void) {
  for (size_t i = 0; i < plan.mount_count; i++) {
    struct mount_entry *m = &plan.mounts[i];
    m->source_fd = -1;
    if (m->head.op != MOUNT_OP_BIND)
      continue;
    m->source_fd = open(m->source, O_PATH | O_CLOEXEC);
    if (m->source_fd < 0 && !(errno == ENOENT && (m->head.flags & MOUNT_FLAG_OPTIONAL)))
      fail(STEP_MOUNT, errno, "bind source %s", m->source);
  }
}

__attribute__((noreturn)) static void run_init(int release_fd) {
  /* The outer process is single-threaded, so the death signal fires exactly when it dies. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    fail(STEP_WAIT_PARENT, errno, "PR_SET_PDEATHSIG");

  /* First word from the outer process: whether the sandbox has a network namespace of its own.
   * The init makes it itself, at once, while the outer process goes on without it (see
   * start_init). */
  char network;
  ssize_t n;
  do
    n = read(release_fd, &network, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1)
    _exit(125); /* the outer process failed and has reported why, or gave this init up */
  /* An init cloned ahead of its plan may be making a network namespace the plan does not want (and
   * will then be ended): a failure is reported only once the plan says it needed one. */
  int network_errno = 0;
  if (network == INIT_OWN_NETWORK && unshare(CLONE_NEWNET) < 0)
    network_errno = errno;

  /* The outer process releases the init by sending it the setup plan, once the init's id maps are
   * written. The init may have been started before the plan was known (see main), so it always
   * takes the plan from here rather than from what it inherited. */
  size_t size;
  uint8_t *buffer = read_to_end(release_fd, &size, "the setup plan from the outer process");
  if (buffer == NULL)
    _exit(125);
  memset(&plan, 0, sizeof plan);
  parse_plan(buffer, size);
  if ((network == INIT_OWN_NETWORK) != ((plan.clone_flags & CLONE_NEWNET) != 0))
    fail(STEP_CLONE, EPROTO, "the init's network namespace does not match the plan");
  if (network_errno != 0)
    fail(STEP_CLONE, network_errno, "unshare(CLONE_NEWNET)");
  release_init_cpus();
  close(FD_LIFELINE);

  /* Opened while the init still has the caller's host ids, so the lookups use the caller's own
   * access to the paths, and in the new mount namespace, whose mounts a bind may copy. */
  open_bind_sources();
  readonly_source_submounts();

  /* The init still carries the caller's host ids, which the new namespace may not map. Becoming
   * the namespace's own root gives files it creates a valid owner; the capabilities it was
   * given with the namespace stay. */
  if (!plan.setgroups_deny && setgroups(0, NULL) < 0)
    fail(STEP_SETGID, errno, "setgroups([]) in init");
  if (setresgid(0, 0, 0) < 0)
    fail(STEP_SETGID, errno, "setresgid(0) in init");
  if (setresuid(0, 0, 0) < 0)
    fail(STEP_SETUID, errno, "setresuid(0) in init");

  /* A change of credentials clears the death signal (the kernel resets it in commit_creds), and
   * as root the switch above is one: arm it again. The outer process may have died in between,
   * which shows as an error on our end of the pivot pipe, whose other end only it holds. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    fail(STEP_WAIT_PARENT, errno, "PR_SET_PDEATHSIG after the switch to the namespace's root");
  struct pollfd outer = { .fd = pivot_fd, .events = 0 };
  if (poll(&outer, 1, 0) == 1 && (outer.revents & (POLLERR | POLLHUP)))
    _exit(125);

  if (setsid() < 0)
    fail(STEP_SETSID, errno, "setsid in init");

  build_root();

  if (plan.hostname != NULL && sethostname(plan.hostname, strlen(plan.hostname)) < 0)
    fail(STEP_HOSTNAME, errno, "sethostname(%s)", plan.hostname);
  if (plan.loopback_up)
    bring_up_loopback();

  receive_command_plan();
  join_cgroups();

  /* The init is in the run's cgroup now (if it has one): it joined the v1 hierarchies itself just
   * now, and the caller wrote its pid into the v2 one before sending the command plan. So the
   * cgroup namespace made now has the sandbox's own cgroup as its root. */
  if ((plan.clone_flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0)
    fail(STEP_CGROUP_JOIN, errno, "unshare(CLONE_NEWCGROUP)");

  sigset_t handled;
  sigemptyset(&handled);
  int forwarded[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
    sigaddset(&handled, forwarded[i]);
  if (sigprocmask(SIG_BLOCK, &handled, NULL) < 0)
    fail(STEP_SUPERVISE, errno, "sigprocmask");
  int signal_fd = signalfd(-1, &handled, SFD_CLOEXEC);
  if (signal_fd < 0)
    fail(STEP_SUPERVISE, errno, "signalfd");

  await_old_root_detach();
  /* Nothing inside may read the init's memory or its /proc files. Not earlier: the outer process
   * needs ptrace-level access to enter the init's namespaces for the detach. */
  prctl(PR_SET_DUMPABLE, 0);

  pid_t command = fork();
  if (command < 0)
    fail(STEP_FORK, errno, "fork of the command");
  if (command == 0)
    run_command();
  supervise(command, signal_fd);
}

/* ---- The outer process ---------------------------------------------------------------------- */

struct init_process {
  pid_t pid;
  int pidfd;
  int release; /* a stream socket: the init's network, then its setup plan go through it */
  int pivot;   /* the init asks for the old root's detach on it */
};

static void write_id_maps(pid_t init) {
  char path[64];
  if (plan.uid_map != NULL) {
    snprintf(path, sizeof path, "/proc/%d/uid_map", init);
    if (write_file(path, plan.uid_map) < 0)
      fail(STEP_UID_MAP, errno, "uid_map '%s'", plan.uid_map);
  }
  if (plan.setgroups_deny) {
    snprintf(path, sizeof path, "/proc/%d/setgroups", init);
    if (write_file(path, "deny") < 0)
      fail(STEP_SETGROUPS, errno, "%s", path);
  }
  if (plan.gid_map != NULL) {
    snprintf(path, sizeof path, "/proc/%d/gid_map", init);
    if (write_file(path, plan.gid_map) < 0)
      fail(STEP_GID_MAP, errno, "gid_map '%s'", plan.gid_map);
  }
}

/* Detaches the init's old root from inside its mount namespace (see await_old_root_detach). An
 * ordinary user has no rights over mount namespaces of its own user namespace, so it enters the
 * sandbox's user namespace first, which it owns. Nothing after this needs the caller's
 * namespaces: the outer process only waits and signals through its pidfd from here on. */
static void detach_for_init(const struct init_process *init) {
  int pidfd = init->pidfd;
  if (setns(pidfd, CLONE_NEWNS) < 0 && (errno != EPERM || setns(pidfd, CLONE_NEWUSER | CLONE_NEWNS) < 0)) {
    int err = errno;
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    fail(STEP_PIVOT_ROOT, err, "entering the sandbox's mount namespace to detach the old root");
  }
  /* Entering a mount namespace leaves the working directory at the top of whatever is stacked on
   * its root: here, the old root. */
  if (umount2(".", MNT_DETACH) < 0) {
    int err = errno;
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    fail(STEP_PIVOT_ROOT, err, "detaching the old root");
  }
}

/* Waits for the init to end, or for the caller to close the lifeline (it died, or it wants the
 * sandbox gone), whichever comes first; detaches the init's old root when it asks. */
static int wait_for_init(const struct init_process *init) {
  int pidfd = init->pidfd, pivot = init->pivot;
  bool killed = false;
  for (;;) {
    struct pollfd fds[3] = {
      { .fd = pidfd, .events = POLLIN },
      { .fd = FD_LIFELINE, .events = killed ? 0 : POLLIN },
      { .fd = pivot, .events = POLLIN },
    };
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR)
        continue;
      syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
      return -1;
    }
    if (fds[0].revents & POLLIN)
      break;
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      /* The pidfd names this init and no other, so the signal cannot hit a reused pid. */
      syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
      killed = true;
    }
    if (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) {
      char request;
      if (read(pivot, &request, 1) == 1 && !killed)
        detach_for_init(init);
      close(pivot);
      pivot = -1; /* poll ignores negative descriptors */
    }
  }

  int status = 0;
  while (waitpid(init->pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

/* Clones an init that waits to be told about its network and then for its plan. One started ahead
 * of the plan (`ahead`) is a guess: when it cannot be made, there is no init yet and no failure
 * either, since the plan may not need what failed; the clone with the plan's own flags reports. */
static struct init_process start_init(uint32_t clone_flags, bool ahead) {
  int release[2] = { -1, -1 }, pivot[2] = { -1, -1 };
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, release) < 0 || pipe2(pivot, O_CLOEXEC) < 0) {
    if (!ahead)
      fail(STEP_CLONE, errno, "socketpair or pipe2 for the init");
    for (int i = 0; i < 2; i++) {
      if (release[i] >= 0)
        close(release[i]);
      if (pivot[i] >= 0)
        close(pivot[i]);
    }
    return (struct init_process){ .pid = -1 };
  }

  /* A plain fork-like clone: the child starts on a copy of this stack, so no stack is passed. */
  int pidfd = -1;
  unsigned long flags = (clone_flags & ~LATER_NAMESPACES) | CLONE_PIDFD | SIGCHLD;
  pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, &pidfd, NULL, NULL);
  if (pid < 0) {
    if (!ahead)
      fail(STEP_CLONE, errno, "clone with flags 0x%x", clone_flags);
    close(release[0]);
    close(release[1]);
    close(pivot[0]);
    close(pivot[1]);
    return (struct init_process){ .pid = -1 };
  }
  if (pid == 0) {
    close(release[1]);
    close(pivot[0]);
    /* Cloned ahead, the init shares the plan's pipe with this process until it is read. */
    if (ahead)
      close(FD_PLAN);
    pivot_fd = pivot[1];
    run_init(release[0]);
  }
  close(release[0]);
  close(pivot[1]);
  unreleased_init = pid;
  unreleased_init_pidfd = pidfd;
  return (struct init_process){ .pid = pid, .pidfd = pidfd, .release = release[1], .pivot = pivot[0] };
}

/* Tells the init whether to make a network namespace of its own, which it does at once. False when
 * the init is gone. */
static bool tell_init_its_network(const struct init_process *init, uint32_t clone_flags) {
  char network = (clone_flags & CLONE_NEWNET) ? INIT_OWN_NETWORK : INIT_CALLERS_NETWORK;
  return send(init->release, &network, 1, MSG_NOSIGNAL) == 1;
}

/* Ends an init that has not been released: it has built nothing yet. Reaped here, so nothing of it
 * outlives this process. */
static void abandon_init(struct init_process *init) {
  kill_and_reap(init->pid, init->pidfd);
  close(init->release);
  close(init->pivot);
  close(init->pidfd);
  unreleased_init = -1;
  *init = (struct init_process){ .pid = -1 };
}

/* Sends the init its setup plan and closes the socket: at its end, the init starts building. */
static void release_init(struct init_process *init, const uint8_t *setup_plan, size_t size) {
  start_init_here(init->pid);
  for (size_t done = 0; done < size;) {
    ssize_t n = send(init->release, setup_plan + done, size - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      fail(STEP_CLONE, errno, "releasing the init");
    done += (size_t)n;
  }
  close(init->release);
  init->release = -1;
  unreleased_init = -1;
}

/* The init has its own copies of the sandbox's standard streams. This process keeps none: with
 * its copies, the command's stdout and stderr would reach end-of-file for Confine only when this
 * process exits (after the init, and after tearing down the mount namespace it entered), and
 * Confine's writes to a stdin the command has closed would fill the pipe instead of failing. */
static void let_go_of_the_sandboxes_stdio(void) {
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int fd = 0; fd <= 2; fd++) {
    if (null < 0 || dup2(null, fd) < 0)
      close(fd);
  }
  if (null > 2)
    close(null);
}

/* glibc's posix_spawn, which Confine starts the helper with, leaves glibc's two internal signals
 * (32 and 33) ignored in the new program (musl's leaves its three, up to 34), and an ignored signal
 * survives execve: the command would start with them ignored. Every other signal arrives here at
 * its default action (Confine asks for that), so these alone are reset, once, for the init and the
 * command to inherit. musl's sigaction refuses signals it reserves for itself, hence the system
 * call, which cannot fail for these numbers. */
static void reset_signals_spawn_ignored(void) {
  struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
  } default_action = { .handler = SIG_DFL };
  for (int sig = 32; sig <= 34; sig++)
    syscall(SYS_rt_sigaction, sig, &default_action, NULL, sizeof default_action.mask);
}

int main(void) {
  reset_signals_spawn_ignored();

  /* A process group of its own: ^C at the caller's terminal signals the caller's group, and it is
   * Confine that must decide what an interruption does to the sandbox (kill it and still give a
   * verdict), not the default action of SIGINT here. */
  setpgid(0, 0);

  if (fcntl(FD_REPORT, F_SETFD, FD_CLOEXEC) < 0 || fcntl(FD_LIFELINE, F_SETFD, FD_CLOEXEC) < 0)
    fail(STEP_READ_PLAN, errno, "report or lifeline descriptor missing");
  have_allowed_cpus = sched_getaffinity(0, sizeof allowed_cpus, &allowed_cpus) == 0;

  /* A setup plan on a pipe means this helper was started before Confine knew the plan (see
   * native/confine-prestart.c), and the plan may be a while coming: the init is cloned meanwhile,
   * into the namespaces almost every plan asks for, and makes its network namespace (most of the
   * cost of them all) once Confine says PLAN_PIPE_START. It is cloned again if the plan asks for
   * other namespaces. */
  struct stat plan_stat;
  if (fstat(FD_PLAN, &plan_stat) < 0)
    fail(STEP_READ_PLAN, errno, "fstat of the plan descriptor");
  struct init_process init = { .pid = -1 };
  size_t size;
  uint8_t *buffer;
  if (S_ISFIFO(plan_stat.st_mode)) {
    init = start_init(USUAL_CLONE_FLAGS, true);
    char start;
    ssize_t n;
    do
      n = read(FD_PLAN, &start, 1);
    while (n < 0 && errno == EINTR);
    if (n == 0) {
      /* The caller did not need this helper after all: not a failure. */
      if (init.pid > 0)
        abandon_init(&init);
      return 0;
    }
    if (n != 1 || start != PLAN_PIPE_START)
      fail(STEP_READ_PLAN, n < 0 ? errno : EPROTO, "the plan pipe does not begin with its start byte");
    /* An init that cannot be told has died: the plan then gets one of its own. */
    if (init.pid > 0 && !tell_init_its_network(&init, USUAL_CLONE_FLAGS))
      abandon_init(&init);
    buffer = read_to_end(FD_PLAN, &size, "the setup plan");
    if (buffer == NULL) {
      /* The caller did not need this sandbox after all: not a failure. */
      if (init.pid > 0)
        abandon_init(&init);
      return 0;
    }
  } else {
    buffer = read_plan(FD_PLAN, &size);
  }
  parse_plan(buffer, size);
  if (plan.base_dir == NULL || plan.rootfs_options == NULL || plan.argc != 0)
    fail(STEP_READ_PLAN, EINVAL, "setup plan lacks its base directory or rootfs, or has a command");
  if (init.pid > 0 && (plan.clone_flags & ~(uint32_t)CLONE_NEWCGROUP) != USUAL_CLONE_FLAGS)
    abandon_init(&init);
  if (init.pid < 0) {
    init = start_init(plan.clone_flags, false);
    if (!tell_init_its_network(&init, plan.clone_flags))
      fail(STEP_CLONE, errno, "telling the init about its network");
  }

  write_id_maps(init.pid);
  /* The init's pidfd rides along: it becomes readable once the init, and with it every process of
   * the sandbox, has ended, so Confine reads the sandbox's usage and removes its cgroup while this
   * process is still tearing down the mount namespace it entered (see detach_for_init). */
  struct report r = { .type = REPORT_INIT_PID, .pid = init.pid, .time_ns = monotonic_ns() };
  if (!send_report_with_fd(&r, init.pidfd))
    send_report(&r); /* without it Confine waits for this process's end instead */
  release_init(&init, buffer, size);
  let_go_of_the_sandboxes_stdio();

  int status = wait_for_init(&init);
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    struct report gone = { .type = REPORT_INIT_GONE, .status = status, .time_ns = monotonic_ns() };
    send_report(&gone);
  }
  return 0;
}
