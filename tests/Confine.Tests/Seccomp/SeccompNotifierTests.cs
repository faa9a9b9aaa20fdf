using System.Collections.Concurrent;
using System.Diagnostics;
using Confine.Seccomp;

namespace Confine.Tests.Seccomp;

/// <summary>Record-and-errno: calls held by the kernel, answered EPERM by a real notifier, and recorded.</summary>
public sealed class SeccompNotifierTests
{
    private const int EPERM = 1;
    private const int ENOSYS = 38;

    private static readonly byte[] s_default = SeccompCompiler.Compile(SeccompProfile.Default);

    [NativeFact]
    public void Notifier_DangerousCalls_AnsweredEpermAndRecordedWithArgumentAndCount()
    {
        ConcurrentQueue<Violation> events = new();

        ProbeRun run = SeccompProbe.Probe(
            s_default,
            listener: true,
            ["getpid", "keyctl", "keyctl", "keyctl", "clone_newns", "clone_newuser_newnet", "socket_packet",
             "socket_netlink_netfilter", "tiocsti", "tiocsti_high_bits", "int80_getpid", "x32_getpid", "clone3", "fork"],
            events.Enqueue);

        Assert.True(run.ExitCode == 0, run.Stderr);
        int pid = (int)run.Results["getpid"].Result;
        foreach (string probe in (string[])["keyctl", "clone_newns", "clone_newuser_newnet", "socket_packet",
                     "socket_netlink_netfilter", "tiocsti", "tiocsti_high_bits", "int80_getpid", "x32_getpid"])
        {
            Assert.True(run.Results[probe] == new ProbeResult(-1, EPERM), $"{probe} gave {run.Results[probe]}");
        }

        AssertViolation(run, "keyctl", "0xffff", count: 3, pid);
        AssertViolation(run, "clone", "CLONE_NEWNS", count: 1, pid);
        AssertViolation(run, "clone", "CLONE_NEWUSER|CLONE_NEWNET", count: 1, pid);
        AssertViolation(run, "socket", "AF_PACKET", count: 1, pid);
        AssertViolation(run, "socket", "AF_NETLINK/NETLINK_NETFILTER", count: 1, pid);
        AssertViolation(run, "ioctl", "TIOCSTI", count: 2, pid);
        AssertViolation(run, "getpid", "i386 (int 0x80)", count: 1, pid);
        AssertViolation(run, "getpid", "x32 ABI", count: 1, pid);

        // clone3's ENOSYS and fork's plain clone are not violations.
        Assert.Equal(8, run.Violations.Length);
        // Each kind is announced once, when first seen; repeats are only counted.
        Assert.Equal(8, events.Count);
        Assert.Equal(1, Assert.Single(events, v => v.Syscall == "keyctl").Count);
        Assert.True(run.NotifierStoppedByItself);
    }

    [NativeFact]
    public void Load_WithNewListener_ListenerIsCloseOnExec()
    {
        // The helper relies on this: the command must never inherit the fd that answers its calls.
        ProbeRun run = SeccompProbe.Probe(s_default, listener: true, ["listener_cloexec"]);

        Assert.Equal(new ProbeResult(1, 0), run.Results["listener_cloexec"]);
    }

    [NativeFact]
    public void Notifier_ProcessInPidNamespace_RecordsPidInsideIt()
    {
        // unshare --pid --fork makes the probe PID 1 of a new PID namespace; the kernel reports the
        // caller's pid as the notifier sees it, and the notifier must translate it.
        using SeccompProbe probe = SeccompProbe.Start(s_default, true, ["getpid", "keyctl"], "/usr/bin/unshare", "--pid", "--fork");
        ProbeRun run = probe.WaitForExit();

        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal(1, run.Results["getpid"].Result);
        Violation violation = Assert.Single(run.Violations);
        Assert.Equal("keyctl", violation.Syscall);
        Assert.Equal(1, violation.Pid);
    }

    [NativeFact]
    public void Stop_WhileSandboxRuns_EndsPromptlyAndLaterCallsFailWithEnosys()
    {
        using SeccompProbe probe = SeccompProbe.Start(s_default, true, ["keyctl", "pause", "keyctl"]);
        SeccompNotifier notifier = probe.Notifier!;
        WaitUntil(() => notifier.Violations.Length == 1);

        Stopwatch clock = Stopwatch.StartNew();
        notifier.Stop();
        Assert.True(notifier.Completion.IsCompletedSuccessfully);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"Stop took {clock.Elapsed}");

        probe.Input.WriteLine();
        probe.Input.Flush();
        ProbeRun run = probe.WaitForExit();

        // The first keyctl was answered; the second found no listener and the kernel failed it itself.
        Assert.Equal(new ProbeResult(-1, ENOSYS), run.Results["keyctl"]);
        Assert.Equal(1, Assert.Single(run.Violations).Count);
    }

    [NativeFact]
    public void Notifier_HandlerThrows_CallsStillAnsweredAndCompletionFaults()
    {
        using SeccompProbe probe = SeccompProbe.Start(s_default, true, ["pause", "keyctl", "bpf"]);
        probe.Notifier!.Recorded += _ => throw new InvalidOperationException("handler failure");
        probe.Input.WriteLine();
        probe.Input.Flush();

        ProbeRun run = probe.WaitForExit();

        Assert.Equal(new ProbeResult(-1, EPERM), run.Results["keyctl"]);
        Assert.Equal(new ProbeResult(-1, EPERM), run.Results["bpf"]);
        Assert.Equal(2, run.Violations.Length);
        Assert.Equal("handler failure", Assert.IsType<InvalidOperationException>(run.NotifierError).Message);
    }

    private static void AssertViolation(ProbeRun run, string syscall, string? argument, int count, int pid)
    {
        Violation? violation = run.Violations.SingleOrDefault(v => v.Syscall == syscall && v.Argument == argument);
        Assert.True(violation is not null, $"no violation {syscall} {argument} in [{string.Join("; ", run.Violations)}]");
        Assert.Equal(count, violation.Count);
        Assert.Equal(pid, violation.Pid);
        Assert.Equal("errno", violation.Action);
    }

    private static void WaitUntil(Func<bool> condition)
    {
        Stopwatch clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "timed out waiting");
            Thread.Sleep(10);
        }
    }
}
