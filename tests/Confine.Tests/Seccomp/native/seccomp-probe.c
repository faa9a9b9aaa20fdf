/* seccomp-probe: loads a seccomp BPF program into itself, then either runs probes or executes a
 * command under it. Built by the tests with cc; stands in for Confine's helper until the run path
 * exists.
 *
 *   seccomp-probe [--listener SOCKET] PROGRAM.bpf probe NAME...
 *   seccomp-probe [--listener SOCKET] PROGRAM.bpf exec COMMAND [ARG...]
 *
 * PROGRAM.bpf "none" loads no filter, to see what the kernel itself answers.
 *
 * With --listener the filter is loaded with SECCOMP_FILTER_FLAG_NEW_LISTENER and the listener fd is
 * sent over the Unix socket at SOCKET (connected before the filter goes in) with SCM_RIGHTS.
 *
 * Each probe makes one call with harmless arguments (a bad fd, a null pointer, a flag combination
 * the kernel rejects) so that a call the filter wrongly lets through shows up as a different errno
 * and does nothing. It prints "NAME RESULT ERRNO" per line. */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif
#define X32_SYSCALL_BIT 0x40000000UL
#define NETLINK_ROUTE 0
#define NETLINK_NETFILTER 12
#define PER_BSD 0x0006

static int listener_cloexec = -1;

static void die(const char *what) {
  dprintf(2, "seccomp-probe: %s: %s\n", what, strerror(errno));
  exit(126);
}

static void *read_file(const char *path, size_t *length) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    die(path);
  size_t size = 0, capacity = 4096;
  char *buffer = malloc(capacity);
  for (;;) {
    if (size == capacity && (buffer = realloc(buffer, capacity *= 2)) == NULL)
      die("realloc");
    ssize_t n = read(fd, buffer + size, capacity - size);
    if (n < 0)
      die("read");
    if (n == 0)
      break;
    size += (size_t)n;
  }
  close(fd);
  *length = size;
  return buffer;
}

static int connect_to(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  if (fd < 0 || strlen(path) >= sizeof address.sun_path)
    die("socket");
  strcpy(address.sun_path, path);
  if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0)
    die("connect");
  return fd;
}

static void send_fd(int socket_fd, int fd) {
  char byte = 'L';
  struct iovec io = { .iov_base = &byte, .iov_len = 1 };
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int))];
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr message = {
    .msg_iov = &io, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control,
  };
  struct cmsghdr *header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(header), &fd, sizeof(int));
  if (sendmsg(socket_fd, &message, 0) < 0)
    die("sendmsg");
}

/* The order Confine's helper follows: no_new_privs, then the filter as the last step. */
static void load(const char *program_path, const char *listener_path) {
  if (strcmp(program_path, "none") == 0)
    return;
  size_t length;
  struct sock_filter *filter = read_file(program_path, &length);
  struct sock_fprog program = { .len = (unsigned short)(length / sizeof *filter), .filter = filter };
  int socket_fd = listener_path != NULL ? connect_to(listener_path) : -1;

  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    die("PR_SET_NO_NEW_PRIVS");
  unsigned int flags = socket_fd >= 0 ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
  long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &program);
  if (fd < 0)
    die("seccomp(SECCOMP_SET_MODE_FILTER)");

  if (socket_fd >= 0) {
    int fd_flags = fcntl((int)fd, F_GETFD);
    listener_cloexec = fd_flags >= 0 && (fd_flags & FD_CLOEXEC) != 0;
    send_fd(socket_fd, (int)fd);
    close((int)fd);
    close(socket_fd);
  }
}

static long int80_getpid(void) {
  long result;
  __asm__ volatile("int $0x80" : "=a"(result) : "a"(20L) : "memory");
  return result;
}

static long close_if_fd(long result) {
  if (result >= 0)
    close((int)result);
  return result;
}

static long run_probe(const char *name) {
  if (strcmp(name, "getpid") == 0)
    return syscall(SYS_getpid);
  if (strcmp(name, "fork") == 0) {
    pid_t child = fork();
    if (child == 0)
      _exit(0);
    if (child > 0)
      waitpid(child, NULL, 0);
    return child;
  }
  if (strcmp(name, "keyctl") == 0)
    return syscall(SYS_keyctl, 0xffff, 0, 0, 0, 0);
  if (strcmp(name, "add_key") == 0)
    return syscall(SYS_add_key, NULL, NULL, NULL, 0, 0);
  if (strcmp(name, "request_key") == 0)
    return syscall(SYS_request_key, NULL, NULL, NULL, 0);
  if (strcmp(name, "bpf") == 0)
    return syscall(SYS_bpf, 0xffff, NULL, 0);
  if (strcmp(name, "unshare_newuser") == 0) /* bit 0 is not an unshare flag: EINVAL if it passes */
    return syscall(SYS_unshare, CLONE_NEWUSER | 0x1);
  if (strcmp(name, "clone_newns") == 0) /* NEWNS with FS is rejected by the kernel: EINVAL */
    return syscall(SYS_clone, CLONE_NEWNS | CLONE_FS | SIGCHLD, 0, 0, 0, 0);
  if (strcmp(name, "clone_newuser") == 0) /* NEWUSER with FS is rejected too */
    return syscall(SYS_clone, CLONE_NEWUSER | CLONE_FS | SIGCHLD, 0, 0, 0, 0);
  if (strcmp(name, "clone_newuser_newnet") == 0)
    return syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNET | CLONE_FS | SIGCHLD, 0, 0, 0, 0);
  if (strcmp(name, "clone3") == 0) /* size 0 is below every version: EINVAL if it passes */
    return syscall(SYS_clone3, NULL, 0);
  if (strcmp(name, "io_uring_setup") == 0)
    return syscall(SYS_io_uring_setup, 0, NULL);
  if (strcmp(name, "perf_event_open") == 0)
    return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
  if (strcmp(name, "mount") == 0)
    return syscall(SYS_mount, NULL, NULL, NULL, 0, NULL);
  if (strcmp(name, "umount2") == 0)
    return syscall(SYS_umount2, NULL, 0);
  if (strcmp(name, "setns") == 0)
    return syscall(SYS_setns, -1, 0);
  if (strcmp(name, "userfaultfd") == 0)
    return syscall(SYS_userfaultfd, 0xffffffff);
  if (strcmp(name, "ptrace") == 0)
    return syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, -1, 0, 0);
  if (strcmp(name, "init_module") == 0)
    return syscall(SYS_init_module, NULL, 0, NULL);
  if (strcmp(name, "open_by_handle_at") == 0)
    return syscall(SYS_open_by_handle_at, -1, NULL, 0);
  if (strcmp(name, "chroot") == 0)
    return syscall(SYS_chroot, "/nonexistent-confine-probe");
  if (strcmp(name, "clock_settime") == 0)
    return syscall(SYS_clock_settime, 0, NULL);
  if (strcmp(name, "syslog") == 0) /* SYSLOG_ACTION_SIZE_BUFFER only reads the buffer's size */
    return syscall(SYS_syslog, 10, NULL, 0);
  if (strcmp(name, "tiocsti") == 0)
    return syscall(SYS_ioctl, -1, (unsigned long)TIOCSTI, NULL);
  if (strcmp(name, "tiocsti_high_bits") == 0) /* the kernel reads only the low 32 bits */
    return syscall(SYS_ioctl, -1, (1UL << 32) | TIOCSTI, NULL);
  if (strcmp(name, "tioclinux") == 0)
    return syscall(SYS_ioctl, -1, (unsigned long)TIOCLINUX, NULL);
  if (strcmp(name, "fionread") == 0)
    return syscall(SYS_ioctl, -1, (unsigned long)FIONREAD, NULL);
  if (strcmp(name, "socket_unix") == 0)
    return close_if_fd(syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0));
  if (strcmp(name, "socket_inet") == 0)
    return close_if_fd(syscall(SYS_socket, AF_INET, SOCK_DGRAM, 0));
  if (strcmp(name, "socket_inet6") == 0)
    return close_if_fd(syscall(SYS_socket, AF_INET6, SOCK_DGRAM, 0));
  if (strcmp(name, "socket_netlink_route") == 0)
    return close_if_fd(syscall(SYS_socket, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
  if (strcmp(name, "socket_netlink_netfilter") == 0)
    return close_if_fd(syscall(SYS_socket, AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER));
  if (strcmp(name, "socket_packet") == 0)
    return close_if_fd(syscall(SYS_socket, AF_PACKET, SOCK_RAW, 0));
  if (strcmp(name, "socket_vsock") == 0)
    return close_if_fd(syscall(SYS_socket, AF_VSOCK, SOCK_STREAM, 0));
  if (strcmp(name, "socket_alg") == 0)
    return close_if_fd(syscall(SYS_socket, AF_ALG, SOCK_SEQPACKET, 0));
  if (strcmp(name, "socket_unix_high_bits") == 0) /* AF_UNIX to the kernel, which reads an int */
    return close_if_fd(syscall(SYS_socket, (1UL << 32) | AF_UNIX, SOCK_STREAM, 0));
  if (strcmp(name, "socketpair_inet") == 0) {
    int fds[2];
    return syscall(SYS_socketpair, AF_INET, SOCK_STREAM, 0, fds);
  }
  if (strcmp(name, "personality_bsd") == 0) {
    long old = syscall(SYS_personality, PER_BSD);
    if (old >= 0)
      syscall(SYS_personality, old);
    return old;
  }
  if (strcmp(name, "personality_query") == 0)
    return syscall(SYS_personality, 0xffffffffUL);
  if (strcmp(name, "personality_linux") == 0)
    return syscall(SYS_personality, 0UL);
  if (strcmp(name, "get_mempolicy") == 0) /* on no allowlist, and harmless: it only reads */
    return syscall(SYS_get_mempolicy, NULL, NULL, 0, NULL, 0);
  if (strcmp(name, "int80_getpid") == 0) {
    long result = int80_getpid();
    if (result < 0 && result > -4096) {
      errno = (int)-result;
      return -1;
    }
    return result;
  }
  if (strcmp(name, "x32_getpid") == 0)
    return syscall(X32_SYSCALL_BIT | SYS_getpid);
  if (strcmp(name, "pause") == 0) { /* waits for a line on stdin, so a test can act in between */
    char c;
    long n = 0;
    while (read(0, &c, 1) == 1 && c != '\n')
      n++;
    return n;
  }
  if (strcmp(name, "listener_cloexec") == 0)
    return listener_cloexec;
  dprintf(2, "seccomp-probe: unknown probe %s\n", name);
  exit(126);
}

int main(int argc, char **argv) {
  const char *listener_path = NULL;
  int i = 1;
  if (i + 1 < argc && strcmp(argv[i], "--listener") == 0) {
    listener_path = argv[i + 1];
    i += 2;
  }
  if (i + 2 > argc) {
    dprintf(2, "usage: seccomp-probe [--listener SOCKET] PROGRAM.bpf probe NAME... | exec COMMAND...\n");
    return 126;
  }
  const char *program_path = argv[i];
  const char *mode = argv[i + 1];
  i += 2;

  load(program_path, listener_path);

  if (strcmp(mode, "exec") == 0) {
    execvp(argv[i], &argv[i]);
    dprintf(2, "seccomp-probe: exec %s: %s\n", argv[i], strerror(errno));
    return 127;
  }

  for (; i < argc; i++) {
    errno = 0;
    long result = run_probe(argv[i]);
    dprintf(1, "%s %ld %d\n", argv[i], result, result < 0 ? errno : 0);
  }
  return 0;
}
