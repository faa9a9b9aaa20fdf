namespace Confine.Tests.Escape;

/// <summary>
/// The escape suite: every probe of probe.c, each an example of a kind of escape, must be refused,
/// as root and as an unprivileged user, under the default policy. The accepted outcomes list every
/// errno that means "refused" for that call; "ok" is never among them for a dangerous call.
/// </summary>
[Trait("Category", "Escape")]
public sealed class EscapeTests : IClassFixture<EscapeProbeFixture>
{
    private readonly EscapeProbeFixture _fixture;

    public EscapeTests(EscapeProbeFixture fixture) => _fixture = fixture;

    public static TheoryData<string, string> Probes => new()
    {
        // Terminal injection and leaked descriptors.
        { "tiocsti_stdin", "ENOTTY EPERM EIO" },
        { "tiocsti_stdout", "ENOTTY EPERM EIO" },
        { "open_dev_tty", "ENOENT ENXIO" },
        { "isatty", "value=000" },
        { "leaked_fds", "value=0" },
        // The helper's executable and the init's memory.
        { "write_init_exe", "EACCES EPERM ETXTBSY ENOENT" },
        { "read_init_mem", "EACCES EPERM" },
        { "write_self_exe", "EACCES ETXTBSY EROFS EPERM" },
        // /proc and /sys.
        { "write_core_pattern", "EACCES EROFS EPERM" },
        { "write_sysrq_trigger", "ENOENT EACCES EROFS" },
        { "write_drop_caches", "EACCES EROFS" },
        { "write_sys_kernel", "ENOENT" },
        { "read_kcore", "ENOENT empty EACCES" },
        { "read_kallsyms", "empty ENOENT EACCES" },
        { "read_keys", "empty ENOENT EACCES" },
        { "read_timer_list", "empty ENOENT EACCES" },
        // cgroups.
        { "open_cgroup_procs", "ENOENT" },
        { "mount_cgroup_v1", "EPERM" },
        { "mount_cgroup2", "EPERM" },
        // Mounts.
        { "remount_root_rw", "EPERM" },
        { "umount_mask", "EPERM" },
        { "mount_tmpfs", "EPERM" },
        { "pivot_root", "EPERM" },
        { "chroot", "EPERM" },
        // Namespaces.
        { "unshare_user", "EPERM" },
        { "unshare_mount", "EPERM" },
        { "unshare_net", "EPERM" },
        { "setns", "EPERM" },
        { "clone_newuser", "EPERM" },
        { "clone3", "ENOSYS" },
        // Kernel facilities that no namespace covers.
        { "keyctl", "EPERM" },
        { "add_key", "EPERM" },
        { "bpf", "EPERM" },
        { "perf_event_open", "EPERM" },
        { "userfaultfd", "EPERM" },
        { "io_uring_setup", "EPERM" },
        { "init_module", "EPERM" },
        { "finit_module", "EPERM" },
        { "delete_module", "EPERM" },
        { "reboot", "EPERM" },
        { "kexec_load", "EPERM" },
        { "swapon", "EPERM" },
        { "swapoff", "EPERM" },
        { "clock_settime", "EPERM" },
        { "settimeofday", "EPERM" },
        { "iopl", "EPERM" },
        { "ioperm", "EPERM" },
        { "open_dev_mem", "ENOENT" },
        { "open_by_handle_at", "EPERM" },
        { "mknod_char", "EPERM" },
        { "mknod_block", "EPERM" },
        { "personality_bsd", "ENOSYS EPERM" },
        { "acct", "EPERM" },
        { "syslog", "EPERM" },
        // Other processes.
        { "ptrace_init", "EPERM" },
        { "process_vm_readv_init", "EPERM" },
        // Host services.
        { "connect_host_tcp", "ECONNREFUSED ENETUNREACH" },
        { "connect_host_abstract", "ECONNREFUSED ENOENT" },
        { "socket_packet", "EPERM EAFNOSUPPORT" },
        { "socket_vsock", "EPERM EAFNOSUPPORT" },
        { "socket_alg", "EPERM EAFNOSUPPORT" },
        { "done", "value=1" },
    };

    [Theory]
    [MemberData(nameof(Probes))]
    public void Probe_AsRoot_IsRefused(string probe, string accepted) =>
        AssertRefused(_fixture.RootOutcomes, probe, accepted);

    [Theory]
    [MemberData(nameof(Probes))]
    public void Probe_AsUnprivilegedUser_IsRefused(string probe, string accepted) =>
        AssertRefused(_fixture.RootlessOutcomes, probe, accepted);

    [Fact]
    public void Probes_EndNormally_AndTheInitSurvivesKill()
    {
        // kill(1, SIGKILL) from inside returns 0 but does nothing: a PID namespace's init only gets
        // the signals it handles from inside. The run going on to "done" is the proof.
        Assert.Equal(VerdictStatus.Ok, _fixture.RootVerdict.Status);
        Assert.Equal(VerdictStatus.Ok, _fixture.RootlessVerdict.Status);
    }

    [Fact]
    public void Probes_LeaveTheHostUnchanged()
    {
        Assert.Equal(_fixture.CorePatternBefore, _fixture.CorePatternAfter);
        Assert.Equal(0, _fixture.TcpConnectionsAccepted);
        Assert.Equal(0, _fixture.AbstractConnectionsAccepted);
    }

    [Fact]
    public void Probes_EveryProbeReported()
    {
        foreach (string probe in Probes.Select(row => (string)row[0]))
        {
            Assert.True(_fixture.RootOutcomes.ContainsKey(probe), $"no outcome for {probe} as root");
            Assert.True(_fixture.RootlessOutcomes.ContainsKey(probe), $"no outcome for {probe} rootless");
        }
    }

    private static void AssertRefused(IReadOnlyDictionary<string, string> outcomes, string probe, string accepted)
    {
        Assert.True(outcomes.TryGetValue(probe, out string? outcome), $"{probe}: the probe printed nothing");
        Assert.True(accepted.Split(' ').Contains(outcome), $"{probe}: got '{outcome}', expected one of '{accepted}'");
    }
}
