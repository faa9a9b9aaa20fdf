using Confine.Seccomp;

namespace Confine.Tests.Seccomp;

/// <summary>
/// Compiled programs loaded into real processes on this kernel. The probes pass harmless arguments, so a
/// call the filter wrongly lets through returns the kernel's own error (EINVAL, EFAULT, EBADF: checked
/// without a filter in <see cref="Probe_WithoutFilter_KernelGivesItsOwnErrors"/>) and does nothing.
/// </summary>
public sealed class SeccompFilterTests
{
    private const int EPERM = 1;
    private const int ENOSYS = 38;
    private const int EAFNOSUPPORT = 97;

    // An errno no probe can get from the kernel, so a probe that returns it was answered by the filter.
    private const int Marker = 133; // EHWPOISON

    private static readonly string[] s_dangerousProbes =
    [
        "keyctl", "add_key", "request_key", "bpf", "unshare_newuser", "clone_newns", "clone_newuser",
        "clone_newuser_newnet", "io_uring_setup", "perf_event_open", "mount", "umount2", "setns", "userfaultfd",
        "ptrace", "init_module", "open_by_handle_at", "chroot", "clock_settime", "syslog", "tiocsti",
        "tiocsti_high_bits", "tioclinux", "socket_packet", "socket_vsock", "socket_alg", "socket_netlink_netfilter",
        "socket_unix_high_bits", "socketpair_inet",
    ];

    private static readonly string[] s_foreignProbes = ["int80_getpid", "x32_getpid"];

    private static byte[] Compile(SeccompProfile profile) => SeccompCompiler.Compile(profile);

    [NativeFact]
    public void Probe_WithoutFilter_KernelGivesItsOwnErrors()
    {
        ProbeRun run = SeccompProbe.Probe(program: null, listener: false, [.. s_dangerousProbes, .. s_foreignProbes, "clone3"]);

        Assert.Equal(0, run.ExitCode);
        foreach (string probe in s_dangerousProbes.Concat(s_foreignProbes).Append("clone3"))
        {
            ProbeResult result = run.Results[probe];
            Assert.True(result.Errno is not EPERM and not Marker, $"{probe} gave {result} without a filter");
        }

        Assert.NotEqual(ENOSYS, run.Results["clone3"].Errno);
    }

    [NativeTheory]
    [InlineData("default")]
    [InlineData("strict")]
    [InlineData("permissive")]
    public void Load_BuiltinProfile_RefusesEveryDangerousProbeFromTheFilter(string name)
    {
        SeccompProfile profile = SeccompProfile.Builtin(name)! with { DangerousAction = SeccompAction.Errno(Marker) };

        ProbeRun run = SeccompProbe.Probe(Compile(profile), listener: false, [.. s_dangerousProbes, .. s_foreignProbes, "getpid"]);

        Assert.Equal(0, run.ExitCode);
        Assert.True(run.Results["getpid"].Result > 0, "the filter must let getpid through");
        foreach (string probe in s_dangerousProbes.Concat(s_foreignProbes))
        {
            Assert.True(run.Results[probe] == new ProbeResult(-1, Marker), $"{name}: {probe} gave {run.Results[probe]}");
        }
    }

    [NativeFact]
    public void Load_DefaultProfile_DangerousCallsFailWithEperm()
    {
        SeccompProfile profile = SeccompProfile.Default with { DangerousAction = SeccompAction.Eperm };

        ProbeRun run = SeccompProbe.Probe(Compile(profile), listener: false, [.. s_dangerousProbes, .. s_foreignProbes]);

        Assert.All(s_dangerousProbes.Concat(s_foreignProbes), probe => Assert.Equal(new ProbeResult(-1, EPERM), run.Results[probe]));
    }

    [NativeFact]
    public void Load_KillAsDangerousAction_ProcessDiesBySigsysAtTheCall()
    {
        byte[] program = Compile(SeccompProfile.Default with { DangerousAction = SeccompAction.KillProcess });

        ProbeRun run = SeccompProbe.Probe(program, false, ["getpid", "keyctl", "getpid"]);

        // .NET reports death by signal N as exit code 128 + N; SIGSYS is 31. Nothing after keyctl ran.
        Assert.Equal(128 + 31, run.ExitCode);
        Assert.StartsWith("getpid ", Assert.Single(run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
    }

    [NativeFact]
    public void Load_DefaultProfile_Clone3FailsWithEnosysAndForkStillWorks()
    {
        byte[] program = Compile(SeccompProfile.Default with { DangerousAction = SeccompAction.Eperm });

        ProbeRun run = SeccompProbe.Probe(program, false, ["clone3", "fork"]);

        Assert.Equal(new ProbeResult(-1, ENOSYS), run.Results["clone3"]);
        Assert.True(run.Results["fork"].Result > 0, $"fork gave {run.Results["fork"]}");
    }

    [NativeFact]
    public void Load_DefaultProfile_PersonalityOnlyQueriesAndPlainLinux()
    {
        ProbeRun run = SeccompProbe.Probe(
            Compile(SeccompProfile.Default), false, ["personality_bsd", "personality_query", "personality_linux"]);

        Assert.Equal(new ProbeResult(-1, ENOSYS), run.Results["personality_bsd"]);
        Assert.True(run.Results["personality_query"].Result >= 0);
        Assert.True(run.Results["personality_linux"].Result >= 0);
    }

    [NativeFact]
    public void Load_DefaultProfile_AllowsOrdinarySocketsAndIoctls()
    {
        ProbeRun run = SeccompProbe.Probe(
            Compile(SeccompProfile.Default),
            false,
            ["socket_unix", "socket_inet", "socket_inet6", "socket_netlink_route", "fionread", "get_mempolicy"]);

        Assert.True(run.Results["socket_unix"].Result >= 0);
        Assert.True(run.Results["socket_inet"].Result >= 0);
        Assert.True(run.Results["socket_inet6"].Result >= 0);
        Assert.True(run.Results["socket_netlink_route"].Result >= 0);
        Assert.Equal(new ProbeResult(-1, 9), run.Results["fionread"]); // EBADF from the kernel
        Assert.Equal(new ProbeResult(-1, ENOSYS), run.Results["get_mempolicy"]); // not allowlisted
    }

    [NativeFact]
    public void Load_StrictProfile_OnlyUnixSockets()
    {
        ProbeRun run = SeccompProbe.Probe(
            Compile(SeccompProfile.Strict), false, ["socket_unix", "socket_inet", "socket_inet6", "socket_netlink_route"]);

        Assert.True(run.Results["socket_unix"].Result >= 0);
        Assert.Equal(new ProbeResult(-1, EAFNOSUPPORT), run.Results["socket_inet"]);
        Assert.Equal(new ProbeResult(-1, EAFNOSUPPORT), run.Results["socket_inet6"]);
        Assert.Equal(new ProbeResult(-1, EAFNOSUPPORT), run.Results["socket_netlink_route"]);
    }

    [NativeTheory]
    [InlineData("/bin/sh", "-c", "echo ok")]
    [InlineData("/usr/bin/python3", "-c", "print(1)")]
    [InlineData("/bin/ls", "/")]
    [InlineData("/usr/bin/dotnet", "--list-runtimes")]
    [InlineData("/bin/sh", "-c", "cd \"$(mktemp -d)\" && printf 'int main(void){return 0;}' > t.c && cc -o t t.c && ./t && echo built")]
    public void Exec_DefaultProfile_OrdinaryProgramRunsWithoutViolations(params string[] command)
    {
        ProbeRun run = SeccompProbe.Exec(Compile(SeccompProfile.Default), listener: true, command);

        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}: {run.Stderr}");
        Assert.NotEmpty(run.Stdout);
        Assert.Empty(run.Violations);
        Assert.True(run.NotifierStoppedByItself, "the notifier should stop once the process is gone");
    }
}
