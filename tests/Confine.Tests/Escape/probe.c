/* Escape probes, run inside a sandbox by EscapeTests. Each probe makes one dangerous call with
 * harmless arguments (a bad descriptor, a null pointer, a path that does nothing), so a hole shows
 * up as the wrong errno, never as damage. Each prints one line:
 *
 *   NAME ok            the call succeeded (a hole, unless the test expects success)
 *   NAME ERRNO-NAME    the call failed with that errno
 *   NAME value=...     a fact the test checks
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
#include <sys/personality.h>
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
    fflush(stdout);                                                                                \
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

/* Reads a file; "ok" only if it yielded data, since a masked file reads as empty. */
static void read_probe(const char *name, const char *path) {
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

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 1;
  const char *abstract = argc > 2 ? argv[2] : "confine-none";

  /* Terminal injection: no descriptor is a terminal and there is no controlling one. */
  char c = 'x';
  PROBE("tiocsti_stdin", ioctl(0, TIOCSTI, &c));
  PROBE("tiocsti_stdout", ioctl(1, TIOCSTI, &c));
  PROBE("open_dev_tty", open("/dev/tty", O_RDWR));
  printf("isatty value=%d%d%d\n", isatty(0), isatty(1), isatty(2));

  /* Descriptors above 2. */
  int leaked = 0;
  for (int fd = 3; fd < 1024; fd++)
    if (fcntl(fd, F_GETFD) >= 0)
      leaked++;
  printf("leaked_fds value=%d\n", leaked);

  /* The helper's executable through /proc, and the init's memory. */
  PROBE("write_init_exe", open("/proc/1/exe", O_WRONLY));
  PROBE("read_init_mem", open("/proc/1/mem", O_RDONLY));
  PROBE("write_self_exe", open("/proc/self/exe", O_WRONLY));

  /* /proc and /sys. */
  PROBE("write_core_pattern", write_file("/proc/sys/kernel/core_pattern", "|/tmp/x"));
  PROBE("write_sysrq_trigger", write_file("/proc/sysrq-trigger", "h"));
  PROBE("write_drop_caches", write_file("/proc/sys/vm/drop_caches", "0"));
  PROBE("write_sys_kernel", write_file("/sys/kernel/uevent_helper", "/tmp/x"));
  read_probe("read_kcore", "/proc/kcore");
  read_probe("read_kallsyms", "/proc/kallsyms");
  read_probe("read_keys", "/proc/keys");
  read_probe("read_timer_list", "/proc/timer_list");

  /* cgroups: no hierarchy is visible, and none can be mounted. */
  PROBE("open_cgroup_procs", open("/sys/fs/cgroup/cgroup.procs", O_WRONLY));
  mkdir("/tmp/cg", 0755);
  PROBE("mount_cgroup_v1", mount("cgroup", "/tmp/cg", "cgroup", 0, "memory"));
  PROBE("mount_cgroup2", mount("cgroup2", "/tmp/cg", "cgroup2", 0, NULL));

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
  PROBE("reboot", syscall(SYS_reboot, 0xfee1dead, 672274793, 0x1234567 /* RB_AUTOBOOT would restart; this magic is invalid */, NULL));
  PROBE("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
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
  PROBE("acct", syscall(SYS_acct, NULL));
  PROBE("syslog", syscall(SYS_syslog, 3 /* SYSLOG_ACTION_READ_ALL */, NULL, 0));

  /* Other processes. */
  PROBE("ptrace_init", ptrace(PTRACE_ATTACH, 1, NULL, NULL));
  char byte;
  struct iovec local = { .iov_base = &byte, .iov_len = 1 };
  struct iovec remote = { .iov_base = (void *)0x400000, .iov_len = 1 };
  PROBE("process_vm_readv_init", syscall(SYS_process_vm_readv, 1, &local, 1, &remote, 1, 0));
  PROBE("kill_init", kill(1, SIGKILL));

  /* The network: the host's loopback services and abstract sockets are in another namespace. */
  PROBE("connect_host_tcp", connect_tcp(port));
  PROBE("connect_host_abstract", connect_abstract(abstract));
  PROBE("socket_packet", socket(AF_PACKET, SOCK_RAW, 0));
  PROBE("socket_vsock", socket(AF_VSOCK, SOCK_STREAM, 0));
  PROBE("socket_alg", socket(AF_ALG, SOCK_SEQPACKET, 0));

  /* Whatever ran above, the probe itself must still be able to finish. */
  printf("done value=1\n");
  return 0;
}
