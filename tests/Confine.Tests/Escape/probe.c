/* Escape probes, run inside a sandbox by EscapeTests. Each probe makes one dangerous call with
 * harmless arguments (a bad descriptor, a null pointer, a path that does nothing), so a hole shows
 * up as the wrong errno, never as damage. Each prints one line:
 *
 *   NAME ok            the call succeeded (a hole, unless the test expects success)
 *   NAME ERRNO-NAME    the call failed with that errno
 *   NAME value=...     a fact the test checks
 *
 * and, before it, "> NAME", so that a run the supervisor kills on a violation shows which probe it
 * was in.
 *
 *   probe PORT ABSTRACT SENTINEL [--only NAME,NAME...]
 *
 * PORT and ABSTRACT are host services the probe must not reach, SENTINEL a host file it must not
 * see. --only runs the named probes (the test runs each kind of escape in a sandbox of its own).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <stdint.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif

static const char *errno_name(int e) {
  switch (e) {
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case ESRCH: return "ESRCH";
  case EIO: return "EIO";
  case ENXIO: return "ENXIO";
  case EBADF: return "EBADF";
  case EAGAIN: return "EAGAIN";
  case ENOMEM: return "ENOMEM";
  case EACCES: return "EACCES";
  case EFAULT: return "EFAULT";
  case EBUSY: return "EBUSY";
  case EEXIST: return "EEXIST";
  case ENODEV: return "ENODEV";
  case ENOTDIR: return "ENOTDIR";
  case EINVAL: return "EINVAL";
  case ENOTTY: return "ENOTTY";
  case ETXTBSY: return "ETXTBSY";
  case EROFS: return "EROFS";
  case ENOSYS: return "ENOSYS";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
  case ECONNREFUSED: return "ECONNREFUSED";
  case ENETUNREACH: return "ENETUNREACH";
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
  default: return "EOTHER";
  }
}

static const char *only_probes; /* comma-separated; run only these */

/* Whether to run the probe NAME; announces it when so. */
static int selected(const char *name) {
  if (only_probes != NULL) {
    size_t length = strlen(name);
    const char *at = only_probes;
    int found = 0;
    while ((at = strstr(at, name)) != NULL) {
      if ((at == only_probes || at[-1] == ',') && (at[length] == ',' || at[length] == '\0')) {
        found = 1;
        break;
      }
      at += length;
    }
    if (!found)
      return 0;
  }
  printf("> %s\n", name);
  fflush(stdout);
  return 1;
}

static void report(const char *name, long result) {
  if (result < 0)
    printf("%s %s\n", name, errno_name(errno));
  else
    printf("%s ok\n", name);
  fflush(stdout);
}

/* Runs one probe in a child of its own, so a probe that changes the process (a new namespace,
 * a personality) cannot change what the next one sees. */
#define PROBE(name, expression)                                                                    \
  do {                                                                                             \
    if (!selected(name))                                                                           \
      break;                                                                                       \
    pid_t child = fork();                                                                          \
    if (child == 0) {                                                                              \
      long probe_result = (long)(expression);                                                      \
      report(name, probe_result);                                                                  \
      _exit(0);                                                                                    \
    }                                                                                              \
    int probe_status;                                                                              \
    waitpid(child, &probe_status, 0);                                                              \
  } while (0)

static long write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY);
  if (fd < 0)
    return -1;
  long n = write(fd, text, strlen(text));
  int saved = errno;
  close(fd);
  errno = saved;
  return n;
}

/* Opens a host file for writing and writes back what it holds, so that a write that should have
 * been refused changes nothing. A file that cannot be read but can be opened for writing is a hole
 * already, and is not written. */
static long rewrite_file(const char *path) {
  char content[4096];
  long length = -1;
  int fd = open(path, O_RDONLY);
  if (fd >= 0) {
    length = read(fd, content, sizeof content);
    close(fd);
  }
  fd = open(path, O_WRONLY);
  if (fd < 0)
    return -1;
  long n = length > 0 ? write(fd, content, (size_t)length) : 0;
  int saved = errno;
  close(fd);
  errno = saved;
  return n;
}

/* Reads a file; "ok" only if it yielded data, since a masked file reads as empty. */
static void read_probe(const char *name, const char *path) {
  if (!selected(name))
    return;
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    report(name, -1);
    return;
  }
  char buffer[64];
  long n = read(fd, buffer, sizeof buffer);
  close(fd);
  if (n > 0)
    printf("%s ok\n", name);
  else if (n == 0)
    printf("%s empty\n", name);
  else
    report(name, -1);
}

static long connect_tcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  long r = connect(fd, (struct sockaddr *)&address, sizeof address);
  int saved = errno;
  close(fd);
  errno = saved;
  return r;
}

static long connect_abstract(const char *name) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  size_t length = strlen(name);
  memcpy(address.sun_path + 1, name, length);
  long r = connect(fd, (struct sockaddr *)&address, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + length));
  int saved = errno;
  close(fd);
  errno = saved;
  return r;
}

/* clone with CLONE_NEWUSER; a child that is created exits at once. */
static long clone_new_user(void) {
  long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
  if (pid == 0)
    _exit(0);
  if (pid > 0)
    waitpid((pid_t)pid, NULL, 0);
  return pid < 0 ? -1 : 0;
}

/* Prints the capability sets, no_new_privs and seccomp mode the probe runs with, from its status
 * file. */
static void status_probe(void) {
  static const char *const fields[] = { "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:" };
  char sets[5][17] = { "none", "none", "none", "none", "none" };
  char no_new_privs[8] = "none", seccomp[8] = "none";
  FILE *status = fopen("/proc/self/status", "r");
  char line[256];
  while (status != NULL && fgets(line, sizeof line, status) != NULL) {
    for (int i = 0; i < 5; i++)
      if (strncmp(line, fields[i], strlen(fields[i])) == 0)
        sscanf(line + strlen(fields[i]), "%16s", sets[i]);
    if (strncmp(line, "NoNewPrivs:", 11) == 0)
      sscanf(line + 11, "%7s", no_new_privs);
    if (strncmp(line, "Seccomp:", 8) == 0)
      sscanf(line + 8, "%7s", seccomp);
  }
  if (status != NULL)
    fclose(status);
  if (selected("capability_sets"))
    printf("capability_sets value=%s/%s/%s/%s/%s\n", sets[0], sets[1], sets[2], sets[3], sets[4]);
  if (selected("no_new_privs"))
    printf("no_new_privs value=%s\n", no_new_privs);
  if (selected("seccomp_mode"))
    printf("seccomp_mode value=%s\n", seccomp);
}

/* capset asking for CAP_SYS_ADMIN (21) in every set: refused without it in the permitted and
 * bounding sets. */
static long raise_capability(void) {
  struct {
    uint32_t version;
    int pid;
  } header = { 0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0 };
  struct {
    uint32_t effective, permitted, inheritable;
  } data[2] = { { 1u << 21, 1u << 21, 1u << 21 }, { 0, 0, 0 } };
  return syscall(SYS_capset, &header, data);
}

/* Runs a setuid (or file-capability) binary the test made, which prints its own line: its euid and
 * capability sets.
 * MARKER rides along in its arguments, so the test can tell whether it is still running. */
static void setuid_probe(const char *name, const char *path, const char *marker) {
  if (!selected(name))
    return;
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    execl(path, path, name, marker, (char *)NULL);
    report(name, -1);
    _exit(0);
  }
  waitpid(child, NULL, 0);
}

/* kill(-1) signals every process the caller may signal but itself and its PID namespace's init.
 * Inside the sandbox that must be the sandbox's own processes only: a child started here dies, and
 * the host processes the test runs under the sandbox's own host ids live on (the test checks). */
static void kill_all_probe(void) {
  if (!selected("kill_all"))
    return;
  pid_t inside = fork();
  if (inside == 0) {
    pause();
    _exit(0);
  }
  printf("kill_all_signal0 value=%d\n", kill(-1, 0) == 0);
  long result = kill(-1, SIGKILL);
  report("kill_all", result);
  int status = 0;
  waitpid(inside, &status, 0);
  printf("kill_all_reached_own_child value=%d\n", WIFSIGNALED(status) ? WTERMSIG(status) : -1);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 1;
  const char *abstract = argc > 2 ? argv[2] : "confine-none";
  const char *sentinel = argc > 3 ? argv[3] : "/nonexistent";
  if (argc > 5 && strcmp(argv[4], "--only") == 0)
    only_probes = argv[5];

  /* Terminal injection: no descriptor is a terminal and there is no controlling one. */
  char c = 'x';
  PROBE("tiocsti_stdin", ioctl(0, TIOCSTI, &c));
  PROBE("tiocsti_stdout", ioctl(1, TIOCSTI, &c));
  PROBE("open_dev_tty", open("/dev/tty", O_RDWR));
  if (selected("isatty"))
    printf("isatty value=%d%d%d\n", isatty(0), isatty(1), isatty(2));

  /* Descriptors above 2. */
  if (selected("leaked_fds")) {
    int leaked = 0;
    for (int fd = 3; fd < 1024; fd++)
      if (fcntl(fd, F_GETFD) >= 0)
        leaked++;
    printf("leaked_fds value=%d\n", leaked);
  }

  /* Capabilities and no_new_privs: nothing held, nothing to regain, no_new_privs for good. */
  status_probe();
  PROBE("capset_raise", raise_capability());
  PROBE("ambient_raise", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 21 /* CAP_SYS_ADMIN */, 0, 0));
  PROBE("clear_no_new_privs", prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0));
  PROBE("securebits_unlock", prctl(PR_SET_SECUREBITS, 0, 0, 0, 0));

  /* The helper's executable through /proc, and the init's memory. */
  PROBE("write_init_exe", open("/proc/1/exe", O_WRONLY));
  PROBE("read_init_mem", open("/proc/1/mem", O_RDONLY));
  PROBE("write_self_exe", open("/proc/self/exe", O_WRONLY));

  /* /proc and /sys. */
  PROBE("write_core_pattern", rewrite_file("/proc/sys/kernel/core_pattern"));
  /* 'h' only prints the help text to the kernel log. */
  PROBE("write_sysrq_trigger", write_file("/proc/sysrq-trigger", "h"));
  PROBE("write_sysrq", rewrite_file("/proc/sys/kernel/sysrq"));
  /* drop_caches takes 1 to 4: 0 is refused even where writing is allowed. */
  PROBE("write_drop_caches", write_file("/proc/sys/vm/drop_caches", "0"));
  PROBE("write_sys_hostname", rewrite_file("/proc/sys/kernel/hostname"));
  PROBE("write_sys_kernel", rewrite_file("/sys/kernel/uevent_helper"));
  PROBE("write_sys_power", rewrite_file("/sys/power/state"));
  PROBE("write_host_sentinel", open(sentinel, O_WRONLY));
  read_probe("read_kcore", "/proc/kcore");
  read_probe("read_kallsyms", "/proc/kallsyms");
  read_probe("read_keys", "/proc/keys");
  read_probe("read_timer_list", "/proc/timer_list");

  /* cgroups: no hierarchy is visible, and none can be mounted. */
  PROBE("open_cgroup_procs", open("/sys/fs/cgroup/cgroup.procs", O_WRONLY));
  /* Joining a parent cgroup (its procs file opened for writing is enough to show the hole). */
  PROBE("join_parent_cgroup", open("/sys/fs/cgroup/memory/cgroup.procs", O_WRONLY));
  /* A v1 release_agent runs as the host's root when a cgroup empties (CVE-2022-0492). */
  PROBE("write_release_agent", rewrite_file("/sys/fs/cgroup/memory/release_agent"));
  PROBE("write_release_agent_named", rewrite_file("/sys/fs/cgroup/systemd/release_agent"));
  PROBE("write_notify_on_release", rewrite_file("/sys/fs/cgroup/memory/notify_on_release"));
  mkdir("/tmp/cg", 0755);
  PROBE("mount_cgroup_v1", mount("cgroup", "/tmp/cg", "cgroup", 0, "memory"));
  PROBE("mount_cgroup2", mount("cgroup2", "/tmp/cg", "cgroup2", 0, NULL));
  /* The CVE-2022-0492 route: a new user and cgroup namespace, then a v1 hierarchy of one's own. */
  PROBE("unshare_cgroup_for_release_agent", unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP));

  /* Mounts. */
  PROBE("remount_root_rw", mount(NULL, "/", NULL, MS_REMOUNT, NULL));
  PROBE("umount_mask", umount2("/proc/kallsyms", MNT_DETACH));
  PROBE("mount_tmpfs", mount("tmpfs", "/tmp/cg", "tmpfs", 0, NULL));
  PROBE("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp/cg"));
  PROBE("chroot", chroot("/tmp"));

  /* Namespaces. */
  PROBE("unshare_user", unshare(CLONE_NEWUSER));
  PROBE("unshare_mount", unshare(CLONE_NEWNS));
  PROBE("unshare_net", unshare(CLONE_NEWNET));
  PROBE("setns", setns(0, 0));
  PROBE("clone_newuser", clone_new_user());
  PROBE("clone3", syscall(SYS_clone3, NULL, 0));

  /* Kernel facilities outside every namespace. */
  PROBE("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0));
  /* A key type that does not exist: EINVAL if the call reaches the keyring code, nothing added. */
  PROBE("add_key", syscall(SYS_add_key, "confine-no-such-type", "confine", "x", 1, -3));
  PROBE("bpf", syscall(SYS_bpf, BPF_PROG_LOAD, NULL, 0));
  struct perf_event_attr attribute = { .size = sizeof attribute };
  PROBE("perf_event_open", syscall(SYS_perf_event_open, &attribute, 0, -1, -1, 0));
  PROBE("userfaultfd", syscall(SYS_userfaultfd, 0));
  PROBE("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
  PROBE("init_module", syscall(SYS_init_module, NULL, 0, ""));
  PROBE("finit_module", syscall(SYS_finit_module, -1, "", 0));
  PROBE("delete_module", syscall(SYS_delete_module, "confine_none", 0));
  /* A wrong second magic number: EINVAL where the call is allowed, so nothing restarts. */
  PROBE("reboot", syscall(SYS_reboot, 0xfee1dead, 0, 0x1234567 /* ..._CMD_RESTART */, NULL));
  /* Flag 0x8000 is no KEXEC_* flag: EINVAL where the call is allowed. With no segments and valid
   * flags the call would unload a loaded crash kernel. */
  PROBE("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0x8000));
  PROBE("swapon", syscall(SYS_swapon, "/tmp/none", 0));
  PROBE("swapoff", syscall(SYS_swapoff, "/tmp/none"));
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  PROBE("clock_settime", clock_settime(CLOCK_REALTIME, &now));
  PROBE("settimeofday", syscall(SYS_settimeofday, NULL, NULL));
  PROBE("iopl", syscall(SYS_iopl, 3));
  PROBE("ioperm", syscall(SYS_ioperm, 0x80, 1, 1));
  PROBE("open_dev_mem", open("/dev/mem", O_RDONLY));
  PROBE("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, NULL, 0));
  PROBE("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/", NULL, NULL, 0));
  PROBE("mknod_char", mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1)));
  PROBE("mknod_block", mknod("/tmp/disk", S_IFBLK | 0600, makedev(254, 0)));
  PROBE("personality_bsd", personality(0x0006 /* PER_BSD */));
  /* acct(NULL) would switch the host's accounting off; a missing file only fails. */
  PROBE("acct", syscall(SYS_acct, "/nonexistent/confine-acct"));
  PROBE("syslog", syscall(SYS_syslog, 3 /* SYSLOG_ACTION_READ_ALL */, NULL, 0));

  /* Other processes. */
  PROBE("ptrace_init", ptrace(PTRACE_ATTACH, 1, NULL, NULL));
  char byte;
  struct iovec local = { .iov_base = &byte, .iov_len = 1 };
  struct iovec remote = { .iov_base = (void *)0x400000, .iov_len = 1 };
  PROBE("process_vm_readv_init", syscall(SYS_process_vm_readv, 1, &local, 1, &remote, 1, 0));
  PROBE("kill_init", kill(1, SIGKILL));

  /* Setuid binaries the test made (owned by the host's root, and by the host ids of the sandbox's
   * root as root and rootless): each prints its euid and capability sets, which must be the
   * caller's and empty (nosuid mounts, no_new_privs, no capability in the bounding set). */
  setuid_probe("setuid_owner_0", "/probe/suid-0", abstract);
  setuid_probe("setuid_owner_1000000000", "/probe/suid-1000000000", abstract);
  setuid_probe("setuid_owner_65534", "/probe/suid-65534", abstract);
  /* The same with file capabilities (CAP_SYS_ADMIN, effective), for the host's root and, as
   * namespaced capabilities, for the host ids of the sandbox's root. */
  setuid_probe("filecap_rootid_0", "/probe/fcap-0", abstract);
  setuid_probe("filecap_rootid_1000000000", "/probe/fcap-1000000000", abstract);
  setuid_probe("filecap_rootid_65534", "/probe/fcap-65534", abstract);
  if (selected("self_ids"))
    printf("self_ids value=%d\n", (int)geteuid());

  /* The network: the host's loopback services and abstract sockets are in another namespace. */
  PROBE("connect_host_tcp", connect_tcp(port));
  PROBE("connect_host_abstract", connect_abstract(abstract));
  PROBE("socket_packet", socket(AF_PACKET, SOCK_RAW, 0));
  PROBE("socket_vsock", socket(AF_VSOCK, SOCK_STREAM, 0));
  PROBE("socket_alg", socket(AF_ALG, SOCK_SEQPACKET, 0));

  /* Last, since it ends every other process of the sandbox. */
  kill_all_probe();

  /* Whatever ran above, the probe itself must still be able to finish. */
  printf("done value=1\n");
  return 0;
}
