using System.Collections.Immutable;
using static Confine.Seccomp.SyscallConstants;

namespace Confine.Seccomp;

// The built-in profiles and the dangerous list. docs/seccomp.md explains each entry; a test checks
// that the document names every one. The lists come first because static initialisers run in textual
// order and the profiles below are built from them.
public sealed partial record SeccompProfile
{
    // Calls both allowlists share: what a libc, a shell, an interpreter and a runtime need to start,
    // manage memory, threads, signals and files, and talk over sockets.
    private static readonly string[] s_commonCalls =
    [
        // processes and threads (clone's namespace flags are refused by the dangerous list)
        "arch_prctl", "brk", "clone", "execve", "execveat", "exit", "exit_group", "fork", "vfork", "wait4",
        "waitid", "getpid", "getppid", "gettid", "getpgid", "getpgrp", "getsid", "setpgid", "setsid",
        "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "prctl", "kill", "tkill", "tgkill",
        "pidfd_open", "pidfd_send_signal", "capget", "capset", "getrusage", "getpriority", "setpriority",
        "sched_yield", "sched_getaffinity", "sched_getparam", "sched_getscheduler", "sched_getattr",
        "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval", "getcpu", "getrlimit",
        "setrlimit", "prlimit64", "times", "sysinfo", "uname", "umask", "membarrier", "restart_syscall",
        // a program may narrow its own powers further
        "seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
        // credentials: changing them needs capabilities the sandbox does not have
        "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "setuid", "setgid",
        "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
        // signals
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait", "rt_sigsuspend",
        "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "pause", "alarm", "signalfd", "signalfd4",
        // memory (memfd_create: the .NET runtime maps its JIT code through one)
        "mmap", "munmap", "mprotect", "mremap", "madvise", "mincore", "msync", "memfd_create",
        "map_shadow_stack",
        // time
        "clock_gettime", "clock_getres", "clock_nanosleep", "gettimeofday", "time", "nanosleep", "getitimer",
        "setitimer", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun", "timer_delete",
        "timerfd_create", "timerfd_settime", "timerfd_gettime",
        // futexes
        "futex", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue",
        // files and descriptors (ioctl's terminal injection requests are refused by the dangerous list)
        "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
        "open", "openat", "openat2", "creat", "close", "close_range", "lseek", "dup", "dup2", "dup3", "fcntl",
        "flock", "fsync", "fdatasync", "truncate", "ftruncate", "fallocate", "fadvise64", "readahead",
        "sendfile", "copy_file_range", "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs",
        "access", "faccessat", "faccessat2", "getcwd", "chdir", "fchdir", "mkdir", "mkdirat", "rmdir",
        "rename", "renameat", "renameat2", "link", "linkat", "unlink", "unlinkat", "symlink", "symlinkat",
        "readlink", "readlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown",
        "fchownat", "utime", "utimes", "utimensat", "futimesat", "mknod", "mknodat", "getdents", "getdents64",
        "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr", "pipe", "pipe2",
        "ioctl", "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "eventfd",
        "eventfd2", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
        "poll", "ppoll", "select", "pselect6", "getrandom",
        // sockets (socket and socketpair themselves have argument rules of their own)
        "connect", "accept", "accept4", "bind", "listen", "getsockname", "getpeername", "setsockopt",
        "getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
    ];

    // Calls the default profile adds to the strict one.
    private static readonly string[] s_defaultOnlyCalls =
    [
        // scheduling and I/O priority changes (bounded by rlimits and missing capabilities)
        "sched_setaffinity", "sched_setparam", "sched_setscheduler", "sched_setattr", "ioprio_get", "ioprio_set",
        // 32-bit TLS descriptors, used by some language runtimes
        "set_thread_area", "get_thread_area",
        // memory locking (bounded by RLIMIT_MEMLOCK) and protection keys
        "mlock", "mlock2", "munlock", "mlockall", "munlockall", "pkey_alloc", "pkey_free", "pkey_mprotect",
        // moving data between pipes and files without copying, and flushing
        "splice", "tee", "vmsplice", "sync", "syncfs", "sync_file_range", "cachestat",
        // extended attribute writes
        "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
        // Linux AIO
        "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
        // SysV and POSIX message IPC, private to the sandbox's IPC namespace
        "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget", "msgsnd",
        "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
        "mq_getsetattr",
    ];

    // personality only reads the persona or sets plain Linux: the other flags are exploit aids
    // (MMAP_PAGE_ZERO let a null dereference in the kernel be exploited, CVE-2009-1895) or switch off
    // defences (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE). The kernel reads an unsigned int, so 32-bit masks.
    private static readonly SyscallRule[] s_personalityRules =
    [
        new("personality", SeccompAction.Allow, ArgumentCondition.Masked32(0, (uint)PER_LINUX)),
        new("personality", SeccompAction.Allow, ArgumentCondition.Masked32(0, (uint)PersonalityQuery)),
    ];

    // Netlink is allowed for NETLINK_ROUTE only: glibc's getaddrinfo (AI_ADDRCONFIG) and getifaddrs read
    // the interface list through it, so name resolution and many servers need it; changing interfaces or
    // routes needs CAP_NET_ADMIN, which the sandbox lacks. Every other family and netlink protocol is on
    // the dangerous list.
    private static readonly SyscallRule[] s_defaultSocketRules =
    [
        new("socket", SeccompAction.Allow, ArgumentCondition.Equal(0, AF_UNIX)),
        new("socket", SeccompAction.Allow, ArgumentCondition.Equal(0, AF_INET)),
        new("socket", SeccompAction.Allow, ArgumentCondition.Equal(0, AF_INET6)),
        new(
            "socket",
            SeccompAction.Allow,
            ArgumentCondition.Equal(0, AF_NETLINK),
            ArgumentCondition.Equal(2, NETLINK_ROUTE)),
        new("socketpair", SeccompAction.Allow, ArgumentCondition.Equal(0, AF_UNIX)),
    ];

    // Strict: Unix sockets only. The families the default profile allows fail with EAFNOSUPPORT, which
    // programs read as "this protocol is not available here" and usually survive.
    private static readonly SyscallRule[] s_strictSocketRules =
    [
        new("socket", SeccompAction.Allow, ArgumentCondition.Equal(0, AF_UNIX)),
        new("socket", SeccompAction.Errno(SeccompErrno.EAFNOSUPPORT), ArgumentCondition.Equal(0, AF_INET)),
        new("socket", SeccompAction.Errno(SeccompErrno.EAFNOSUPPORT), ArgumentCondition.Equal(0, AF_INET6)),
        new(
            "socket",
            SeccompAction.Errno(SeccompErrno.EAFNOSUPPORT),
            ArgumentCondition.Equal(0, AF_NETLINK),
            ArgumentCondition.Equal(2, NETLINK_ROUTE)),
        new("socketpair", SeccompAction.Allow, ArgumentCondition.Equal(0, AF_UNIX)),
    ];

    /// <summary>
    /// Calls refused by every profile. Each entry says why; entries with conditions refuse only the
    /// calls that match them (clone with a namespace flag, sockets of rarely used families).
    /// </summary>
    public static ImmutableArray<DangerousSyscall> DangerousSyscalls { get; } = BuildDangerousSyscalls();

    /// <summary>
    /// The profile for ordinary untrusted programs: shells, coreutils, python3, gcc-compiled programs and
    /// the .NET runtime. An allowlist; anything else gets ENOSYS.
    /// </summary>
    public static SeccompProfile Default { get; } = new()
    {
        Name = "default",
        DefaultAction = SeccompAction.Enosys,
        Syscalls =
        [
            .. AllowAll(s_commonCalls), .. AllowAll(s_defaultOnlyCalls), .. s_personalityRules, .. s_defaultSocketRules,
        ],
    };

    /// <summary>
    /// The profile for the 'maximum' level: a smaller allowlist, without SysV and POSIX message IPC,
    /// Linux AIO, splice, xattr writes or memory locking, and with Unix sockets only (other families
    /// fail with EAFNOSUPPORT).
    /// </summary>
    public static SeccompProfile Strict { get; } = new()
    {
        Name = "strict",
        DefaultAction = SeccompAction.Enosys,
        Syscalls = [.. AllowAll(s_commonCalls), .. s_personalityRules, .. s_strictSocketRules],
    };

    /// <summary>
    /// The profile for the 'development' level: every call is allowed except the dangerous ones (and i386
    /// and x32 calls). Debuggers, profilers and container tools still fail.
    /// </summary>
    public static SeccompProfile Permissive { get; } = new()
    {
        Name = "permissive",
        DefaultAction = SeccompAction.Allow,
    };

    /// <summary>The built-in profile called <paramref name="name"/>, or null.</summary>
    public static SeccompProfile? Builtin(string name) => name switch
    {
        "default" => Default,
        "strict" => Strict,
        "permissive" => Permissive,
        _ => null,
    };

    private static IEnumerable<SyscallRule> AllowAll(IEnumerable<string> names) =>
        names.Select(name => new SyscallRule(name, SeccompAction.Allow));

    private static ImmutableArray<DangerousSyscall> BuildDangerousSyscalls()
    {
        List<DangerousSyscall> list = [];

        void Add(string reason, params string[] names)
        {
            foreach (string name in names)
            {
                list.Add(new DangerousSyscall(name, reason));
            }
        }

        Add("Kernel keyrings are not namespaced: a sandbox could read or plant keys of the same user outside it "
            + "(and the keyring code has had privilege escalations, CVE-2016-0728).",
            "keyctl", "add_key", "request_key");
        Add("Loads or removes kernel code.", "init_module", "finit_module", "delete_module");
        Add("Removed from Linux 2.6; refused so that no kernel that still has it can be reached.",
            "create_module", "query_module", "get_kernel_syms");
        Add("Replaces the running kernel.", "kexec_load", "kexec_file_load");
        Add("Halts or restarts the machine (in a PID namespace it would only end the sandbox's init, which is "
            + "still not the command's to do).", "reboot");
        Add("Changes the host's swap devices.", "swapon", "swapoff");
        Add("eBPF programs run in the kernel behind a verifier that has had many escapes (CVE-2021-3490, "
            + "CVE-2022-23222).", "bpf");
        Add("Performance counters expose kernel and cross-process timing data, with a long history of "
            + "privilege escalations (CVE-2013-2094).", "perf_event_open");
        Add("Lets a program stall the kernel in the middle of copying user memory, the usual way kernel "
            + "exploits win their races.", "userfaultfd");
        Add("Operations submitted through an io_uring are never seen by seccomp, and io_uring has been a rich "
            + "source of kernel bugs (CVE-2022-29582, CVE-2023-2598).",
            "io_uring_setup", "io_uring_enter", "io_uring_register");
        Add("Changes the mount tree, which is fixed before the command starts; the new mount API's fsconfig was "
            + "CVE-2022-0185.", "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
            "fsmount", "fspick", "mount_setattr");
        list.Add(new DangerousSyscall(
            "open_tree_attr",
            "Changes the mount tree like open_tree and mount_setattr together (Linux 6.15).")
        {
            Number = 467,
        });
        Add("Creates or joins namespaces: a new user namespace hands the program every capability inside it, "
            + "the first step of most recent container escapes (CVE-2022-0185, CVE-2024-1086).", "unshare", "setns");
        list.Add(new DangerousSyscall(
            "clone",
            "Refused with any CLONE_NEW* flag, for the reason unshare is; plain fork and thread creation pass.")
        {
            When = [.. NamespaceFlags.Select(f => ImmutableArray.Create(ArgumentCondition.HasFlags(0, f.Value)))],
        });
        list.Add(new DangerousSyscall(
            "clone3",
            "Its flags are in memory, where a filter cannot read them; ENOSYS makes glibc and musl fall back "
            + "to clone, whose flags are checked.")
        {
            Action = SeccompAction.Enosys,
        });
        Add("Opens any file of a mount by its handle, outside the sandbox's view of the tree (the 2014 "
            + "\"shocker\" container escape).", "open_by_handle_at");
        Add("Produces the handles open_by_handle_at takes and reveals the identity of host files.",
            "name_to_handle_at");
        Add("Direct access to I/O ports.", "iopl", "ioperm");
        Add("Installs 16-bit code segments; the LDT has been behind several kernel entry bugs and only DOS "
            + "and Win16 emulators need it.", "modify_ldt");
        Add("The system clock is not namespaced: setting or steering it changes the host's time (the "
            + "read-only forms are refused too, since the filter cannot see the structure's mode field).",
            "clock_settime", "clock_adjtime", "settimeofday", "adjtimex");
        Add("Turns on process accounting for the whole host.", "acct");
        Add("Manages the host's disk quotas.", "quotactl", "quotactl_fd");
        Add("Turns profiling cookies into host paths.", "lookup_dcookie");
        Add("The removed kernel NFS server interface.", "nfsservctl");
        Add("Loads an a.out library through an old kernel path (CVE-2004-1235).", "uselib");
        Add("Obsolete; reports on host filesystems by device number.", "ustat");
        Add("Obsolete; lists the kernel's filesystem types.", "sysfs");
        Add("The removed binary sysctl interface.", "_sysctl");
        Add("Reads and writes other processes; before Linux 4.8 a tracer could even change a call after "
            + "seccomp had checked it.", "ptrace");
        Add("Reads or writes another process's memory without ptrace.", "process_vm_readv", "process_vm_writev");
        Add("Compares kernel objects of two processes, which leaks kernel pointer order.", "kcmp");
        Add("Takes a file descriptor out of another process.", "pidfd_getfd");
        Add("Acts on another process's memory.", "process_madvise");
        Add("Reads and clears the kernel log, which holds kernel addresses and host messages.", "syslog");
        Add("Changes the root directory; with any other privilege it is a classic way out of a mount tree, and "
            + "the sandbox's root is fixed.", "chroot");

        list.Add(new DangerousSyscall(
            "socket",
            "Families other than AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK: rarely used protocol code reachable "
            + "without privilege has been a steady source of kernel bugs (AF_RDS CVE-2010-3904, AF_VSOCK "
            + "CVE-2021-26708), and AF_PACKET sees raw traffic.")
        {
            When = [.. FamiliesOutside(AF_UNIX, AF_INET, AF_INET6, AF_NETLINK).Select(c => ImmutableArray.Create(c))],
        });
        list.Add(new DangerousSyscall(
            "socket",
            "Netlink protocols other than NETLINK_ROUTE: netfilter (nf_tables, CVE-2024-1086), audit, uevents "
            + "and generic netlink are host interfaces.")
        {
            When =
            [
                [
                    ArgumentCondition.Equal(0, AF_NETLINK),
                    new ArgumentCondition(2, SeccompComparison.NotEqual, NETLINK_ROUTE),
                ],
            ],
        });
        list.Add(new DangerousSyscall(
            "socketpair",
            "Only AF_UNIX makes socket pairs worth having; other families are the same attack surface as above.")
        {
            When = [[new ArgumentCondition(0, SeccompComparison.NotEqual, AF_UNIX)]],
        });
        list.Add(new DangerousSyscall(
            "ioctl",
            "TIOCSTI pushes characters into a terminal's input, so a sandbox that shares the caller's terminal "
            + "could type commands into its shell (CVE-2017-5226). The kernel ignores the upper 32 bits of the "
            + "request, so they are masked (CVE-2019-10063).")
        {
            When = [[ArgumentCondition.Masked32(1, (uint)TIOCSTI)]],
        });
        list.Add(new DangerousSyscall(
            "ioctl",
            "TIOCLINUX can paste the console's selection into its input, as TIOCSTI does (CVE-2023-1523).")
        {
            When = [[ArgumentCondition.Masked32(1, (uint)TIOCLINUX)]],
        });

        return [.. list];
    }

    /// <summary>
    /// Conditions on argument 0 that together match every value outside <paramref name="allowed"/>: each
    /// gap between allowed values as aligned blocks (one masked test per power-of-two block), and one
    /// test for everything above the largest. Values with any of the upper 32 bits set fall in the last,
    /// so the upper half of an <c>int</c> family cannot smuggle a value past them.
    /// </summary>
    private static IEnumerable<ArgumentCondition> FamiliesOutside(params ulong[] allowed)
    {
        ulong next = 0;
        foreach (ulong value in allowed.Order())
        {
            foreach (ArgumentCondition block in Blocks(next, value))
            {
                yield return block;
            }

            next = value + 1;
        }

        yield return new ArgumentCondition(0, SeccompComparison.Greater, allowed.Max());
    }

    // [from, to) as aligned power-of-two blocks.
    private static IEnumerable<ArgumentCondition> Blocks(ulong from, ulong to)
    {
        while (from < to)
        {
            ulong size = from == 0 ? 1UL << 62 : from & (~from + 1);
            while (from + size > to)
            {
                size >>= 1;
            }

            yield return size == 1
                ? ArgumentCondition.Equal(0, from)
                : ArgumentCondition.MaskedEqual(0, ~(size - 1), from);
            from += size;
        }
    }
}
