namespace Confine.Tests.Escape;

/// <summary>One line of probe.c's output and what it may say.</summary>
/// <param name="Name">The probe's name, as probe.c prints it.</param>
/// <param name="Accepted">Every outcome that means "refused" (or the expected fact), space-separated.</param>
/// <param name="Group">
/// The kind of escape; each group runs in a sandbox of its own, and the host is checked after each.
/// <see cref="EscapeProbes.Setuid"/> runs as uid 1000 inside.
/// </param>
/// <param name="Syscall">
/// For a call on seccomp's dangerous list, the syscall its violation names: recorded under every level,
/// and ending the run under <c>maximum</c>. Null for probes the filter does not refuse by recording.
/// </param>
public sealed record EscapeProbe(string Name, string Accepted, string Group, string? Syscall = null);

/// <summary>
/// The escape probes of probe.c, each an example of a kind of escape, with the outcomes that mean the
/// kind is closed, and the outcomes that legitimately differ by isolation level.
/// </summary>
public static class EscapeProbes
{
    /// <summary>The setuid probes, run as uid 1000 inside so that a setuid-root binary would show a change.</summary>
    public const string Setuid = "setuid";

    /// <summary>The sandbox's user for the setuid run.</summary>
    public const uint SetuidRunUid = 1000;

    /// <summary>What a setuid binary prints when it gained nothing: the caller's euid, no capability.</summary>
    private const string NothingGained = "value=euid:1000/caps:0000000000000000/0000000000000000";

    public static IReadOnlyList<EscapeProbe> All { get; } =
    [
        // Terminal injection and leaked descriptors.
        new("tiocsti_stdin", "ENOTTY EPERM EIO", "terminal", "ioctl"),
        new("tiocsti_stdout", "ENOTTY EPERM EIO", "terminal", "ioctl"),
        new("open_dev_tty", "ENOENT ENXIO", "terminal"),
        new("isatty", "value=000", "terminal"),
        new("leaked_fds", "value=0", "terminal"),
        // Capabilities and no_new_privs, read and changed from inside.
        new("capability_sets", "value=0000000000000000/0000000000000000/0000000000000000/0000000000000000/0000000000000000", "capabilities"),
        new("no_new_privs", "value=1", "capabilities"),
        new("seccomp_mode", "value=2", "capabilities"),
        new("capset_raise", "EPERM", "capabilities"),
        new("ambient_raise", "EPERM", "capabilities"),
        new("clear_no_new_privs", "EINVAL", "capabilities"),
        new("securebits_unlock", "EPERM", "capabilities"),
        // The helper's executable and the init's memory.
        new("write_init_exe", "EACCES EPERM ETXTBSY ENOENT", "helper"),
        new("read_init_mem", "EACCES EPERM", "helper"),
        new("write_self_exe", "EACCES ETXTBSY EROFS EPERM", "helper"),
        // /proc and /sys, and a host file outside every bind.
        new("write_core_pattern", "EACCES EROFS EPERM", "proc_sys"),
        new("write_sysrq_trigger", "ENOENT EACCES EROFS", "proc_sys"),
        new("write_sysrq", "ENOENT EACCES EROFS", "proc_sys"),
        new("write_drop_caches", "EACCES EROFS", "proc_sys"),
        new("write_sys_hostname", "EACCES EROFS EPERM", "proc_sys"),
        new("write_sys_kernel", "ENOENT EACCES EROFS", "proc_sys"),
        new("write_sys_power", "ENOENT EACCES EROFS", "proc_sys"),
        new("write_host_sentinel", "ENOENT", "proc_sys"),
        new("read_kcore", "ENOENT empty EACCES", "proc_sys"),
        new("read_kallsyms", "empty ENOENT EACCES", "proc_sys"),
        new("read_keys", "empty ENOENT EACCES", "proc_sys"),
        new("read_timer_list", "empty ENOENT EACCES", "proc_sys"),
        // cgroups: no hierarchy is visible, none can be mounted, no release_agent reached.
        new("open_cgroup_procs", "ENOENT EACCES", "cgroups"),
        new("join_parent_cgroup", "ENOENT EACCES EROFS", "cgroups"),
        new("write_release_agent", "ENOENT EACCES EROFS", "cgroups"),
        new("write_release_agent_named", "ENOENT EACCES EROFS", "cgroups"),
        new("write_notify_on_release", "ENOENT EACCES EROFS", "cgroups"),
        new("mount_cgroup_v1", "EPERM", "cgroups", "mount"),
        new("mount_cgroup2", "EPERM", "cgroups", "mount"),
        new("unshare_cgroup_for_release_agent", "EPERM", "cgroups", "unshare"),
        // Mounts.
        new("remount_root_rw", "EPERM", "mounts", "mount"),
        new("umount_mask", "EPERM", "mounts", "umount2"),
        new("mount_tmpfs", "EPERM", "mounts", "mount"),
        new("pivot_root", "EPERM", "mounts", "pivot_root"),
        new("chroot", "EPERM", "mounts", "chroot"),
        // Namespaces.
        new("unshare_user", "EPERM", "namespaces", "unshare"),
        new("unshare_mount", "EPERM", "namespaces", "unshare"),
        new("unshare_net", "EPERM", "namespaces", "unshare"),
        new("setns", "EPERM", "namespaces", "setns"),
        new("clone_newuser", "EPERM", "namespaces", "clone"),
        new("clone3", "ENOSYS", "namespaces"),
        // Kernel facilities that no namespace covers.
        new("keyctl", "EPERM", "kernel", "keyctl"),
        new("add_key", "EPERM", "kernel", "add_key"),
        new("bpf", "EPERM", "kernel", "bpf"),
        new("perf_event_open", "EPERM", "kernel", "perf_event_open"),
        new("userfaultfd", "EPERM", "kernel", "userfaultfd"),
        new("io_uring_setup", "EPERM", "kernel", "io_uring_setup"),
        new("init_module", "EPERM", "kernel", "init_module"),
        new("finit_module", "EPERM", "kernel", "finit_module"),
        new("delete_module", "EPERM", "kernel", "delete_module"),
        new("reboot", "EPERM", "kernel", "reboot"),
        new("kexec_load", "EPERM", "kernel", "kexec_load"),
        new("swapon", "EPERM", "kernel", "swapon"),
        new("swapoff", "EPERM", "kernel", "swapoff"),
        new("clock_settime", "EPERM", "kernel", "clock_settime"),
        new("settimeofday", "EPERM", "kernel", "settimeofday"),
        new("iopl", "EPERM", "kernel", "iopl"),
        new("ioperm", "EPERM", "kernel", "ioperm"),
        new("open_dev_mem", "ENOENT EACCES", "kernel"),
        new("open_by_handle_at", "EPERM", "kernel", "open_by_handle_at"),
        new("name_to_handle_at", "EPERM", "kernel", "name_to_handle_at"),
        new("mknod_char", "EPERM", "kernel"),
        new("mknod_block", "EPERM", "kernel"),
        new("personality_bsd", "ENOSYS EPERM", "kernel"),
        new("acct", "EPERM", "kernel", "acct"),
        new("syslog", "EPERM", "kernel", "syslog"),
        // Other processes: the init's pid namespace, and kill(-1) reaching only the sandbox.
        new("ptrace_init", "EPERM", "processes", "ptrace"),
        new("process_vm_readv_init", "EPERM", "processes", "process_vm_readv"),
        new("kill_init", "ok", "processes"),
        new("kill_all", "ok", "processes"),
        new("kill_all_signal0", "value=1", "processes"),
        new("kill_all_reached_own_child", "value=9", "processes"),
        // Host services.
        new("connect_host_tcp", "ECONNREFUSED ENETUNREACH", "network"),
        new("connect_host_abstract", "ECONNREFUSED ENOENT", "network"),
        new("socket_packet", "EPERM EAFNOSUPPORT", "network", "socket"),
        new("socket_vsock", "EPERM EAFNOSUPPORT", "network", "socket"),
        new("socket_alg", "EPERM EAFNOSUPPORT", "network", "socket"),
        // Setuid and file-capability binaries, run as uid 1000 inside: nothing gained from any owner.
        new("setuid_owner_0", NothingGained, Setuid),
        new("setuid_owner_1000000000", NothingGained, Setuid),
        new("setuid_owner_65534", NothingGained, Setuid),
        new("filecap_rootid_0", NothingGained, Setuid),
        new("filecap_rootid_1000000000", NothingGained, Setuid),
        new("filecap_rootid_65534", NothingGained, Setuid),
        new("self_ids", $"value={SetuidRunUid}", Setuid),
    ];

    /// <summary>
    /// Where a level legitimately gives another outcome, and why. Everything else is the same under
    /// every level.
    /// </summary>
    public static string Accepted(EscapeConfiguration configuration, EscapeProbe probe) =>
        (configuration.Level, probe.Name) switch
        {
            // development shares the host's network (docs/levels.md): its loopback services and, without
            // Landlock, its abstract sockets are reachable by design (docs/limitations.md, Landlock).
            (IsolationLevel.Development, "connect_host_tcp" or "connect_host_abstract") => "ok",
            // development's permissive profile leaves personality unfiltered (gdb sets ADDR_NO_RANDOMIZE);
            // a persona only changes the caller's own process (docs/seccomp.md).
            (IsolationLevel.Development, "personality_bsd") => "ok",
            // maximum's strict profile allows only Unix sockets: socket(AF_INET) fails before any connect.
            (IsolationLevel.Maximum, "connect_host_tcp") => "EAFNOSUPPORT",
            // maximum adds Landlock, which refuses device nodes before the capability check, and whose
            // signal scope refuses signals to processes outside the command's domain, the init's among them.
            (IsolationLevel.Maximum, "mknod_char" or "mknod_block") => "EACCES",
            (IsolationLevel.Maximum, "kill_init") => "EPERM",
            _ => probe.Accepted,
        };

    public static EscapeProbe Named(string name) => All.Single(p => p.Name == name);
}

/// <summary>One way of running the suite: as root through the library or rootless through the CLI, at a level.</summary>
/// <param name="Level">The isolation level; null for <see cref="SandboxPolicy.Default"/> (root only).</param>
public sealed record EscapeConfiguration(string Name, IsolationLevel? Level, bool Rootless)
{
    public static IReadOnlyList<EscapeConfiguration> All { get; } =
    [
        new("root-default", null, false),
        new("root-maximum", IsolationLevel.Maximum, false),
        new("root-balanced", IsolationLevel.Balanced, false),
        new("root-development", IsolationLevel.Development, false),
        new("rootless-maximum", IsolationLevel.Maximum, true),
        new("rootless-balanced", IsolationLevel.Balanced, true),
        new("rootless-development", IsolationLevel.Development, true),
    ];

    /// <summary>Whether a violation ends the run (<c>on_violation: kill</c>), so recorded probes run one per sandbox.</summary>
    public bool KillsOnViolation => Level == IsolationLevel.Maximum;

    /// <summary>Whether the sandbox shares the host's network namespace.</summary>
    public bool SharesHostNetwork => Level == IsolationLevel.Development;

    public static EscapeConfiguration Named(string name) => All.Single(c => c.Name == name);

    public override string ToString() => Name;
}
