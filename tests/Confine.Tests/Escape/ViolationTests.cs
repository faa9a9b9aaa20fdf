using System.Collections.Concurrent;
using System.Diagnostics;
using Confine.Tests.Support;

namespace Confine.Tests.Escape;

/// <summary>Refused dangerous calls are recorded, reported as they happen, and can end the run.</summary>
[Trait("Category", "Escape")]
// Run again on the published command by scripts/test.sh (see ConfineCli).
[Trait("Command", "confine")]
public sealed class ViolationTests
{
    [Fact]
    public async Task Run_NestedUserNamespace_IsRecordedWithItsFlag()
    {
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["unshare", "--user", "true"]);
        Assert.Equal(VerdictStatus.ExitNonzero, verdict.Status);
        Violation violation = Assert.Single(verdict.Violations, v => v.Syscall == "unshare");
        Assert.Contains("CLONE_NEWUSER", violation.Argument);
        Assert.True(violation.Pid > 1, $"pid {violation.Pid} should be a process inside the sandbox");
        Assert.Equal(1, violation.Count);
    }

    [Fact]
    public async Task Run_RepeatedAttempts_AreCountedOnce()
    {
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["/bin/sh", "-c", "for i in 1 2 3; do unshare --user true; done; true"]);
        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Violation violation = Assert.Single(verdict.Violations, v => v.Syscall == "unshare");
        Assert.Equal(3, violation.Count);
    }

    [Fact]
    public async Task Run_OnViolation_IsCalledAsItHappens()
    {
        var seen = new ConcurrentQueue<Violation>();
        var io = new SandboxIO { OnViolation = seen.Enqueue };
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["unshare", "--mount", "true"], io);
        Assert.Contains(seen, v => v.Syscall == "unshare" && v.Argument!.Contains("CLONE_NEWNS"));
        Assert.NotEmpty(verdict.Violations);
    }

    [Fact]
    public async Task Run_ViolationWithKillAction_EndsTheRunAsViolation()
    {
        var policy = SandboxPolicy.Default with { OnViolation = ViolationAction.Kill };
        Verdict verdict = await Sandbox.RunAsync(policy, ["/bin/sh", "-c", "unshare --user true; sleep 10; echo survived"]);
        Assert.Equal(VerdictStatus.Violation, verdict.Status);
        Assert.DoesNotContain("survived", verdict.Stdout.Text);
        Assert.Contains(verdict.Violations, v => v.Syscall == "unshare");
        Assert.InRange(verdict.WallTimeSeconds, 0, 5);
    }

    [Fact]
    public async Task Run_IntegerArguments_AreRecordedByName()
    {
        // bpf(BPF_PROG_LOAD, NULL, 0) and keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): refused before the
        // kernel could read the missing attributes.
        Verdict verdict = await Sandbox.RunAsync(
            SandboxPolicy.Default,
            ["python3", "-c", "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.syscall(321, 5, None, 0)\nlibc.syscall(250, 1, None)"]);

        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.Contains(verdict.Violations, v => v is { Syscall: "bpf", Argument: "BPF_PROG_LOAD" });
        Assert.Contains(verdict.Violations, v => v is { Syscall: "keyctl", Argument: "KEYCTL_JOIN_SESSION_KEYRING" });
    }

    [Fact]
    public async Task Run_KillProfileKillsTheCommand_ReportsAViolation()
    {
        string profile = Path.Combine(Path.GetTempPath(), $"kill-profile-{Guid.NewGuid():N}.json");
        File.WriteAllText(profile, """{ "version": 1, "base": "default", "dangerous_action": "kill" }""");
        try
        {
            var seen = new ConcurrentQueue<Violation>();
            var policy = SandboxPolicy.Default with { SeccompProfile = profile };
            Verdict verdict = await Sandbox.RunAsync(
                policy,
                ["python3", "-c", "import ctypes\nprint('before', flush=True)\nctypes.CDLL(None).syscall(321, 5, None, 0)\nprint('after')"],
                new SandboxIO { OnViolation = seen.Enqueue });

            Assert.Equal(VerdictStatus.Violation, verdict.Status);
            Assert.Equal(31, verdict.Signal);
            Assert.Equal("SIGSYS", verdict.SignalName);
            Assert.Equal("before\n", verdict.Stdout.Text);
            Violation violation = Assert.Single(verdict.Violations);
            Assert.Equal("unknown", violation.Syscall);
            Assert.Equal("killed by seccomp (SIGSYS)", violation.Argument);
            Assert.Equal("kill", violation.Action);
            Assert.True(violation.Pid > 1, $"pid {violation.Pid} should be the command's inside the sandbox");
            Assert.Equal(violation, Assert.Single(seen));
        }
        finally
        {
            File.Delete(profile);
        }
    }

    [Fact]
    public void Cli_KillProfileKillsTheCommandRootless_ReportsAViolation()
    {
        string profile = Path.Combine(Path.GetTempPath(), $"kill-profile-{Guid.NewGuid():N}.json");
        File.WriteAllText(profile, """{ "version": 1, "base": "default", "dangerous_action": "kill" }""");
        File.SetUnixFileMode(profile, (UnixFileMode)0x1a4); // 0644: the unprivileged user reads it
        try
        {
            string keyctl = "import ctypes\nctypes.CDLL(None).syscall(250, 1, None)";
            CliResult result = ConfineCli.Run(
                ["run", "--json", "--allow-degrade", "--seccomp", profile, "--", "python3", "-c", keyctl], unprivileged: true);

            Assert.Equal(128 + 31, result.ExitCode);
            Verdict verdict = VerdictJson.Deserialize(result.Stdout);
            Assert.Equal(VerdictStatus.Violation, verdict.Status);
            Assert.Equal("SIGSYS", verdict.SignalName);
            Assert.Contains(verdict.Violations, v => v is { Syscall: "unknown", Action: "kill" });
            Assert.Contains("warning 1001 ViolationRecorded", result.Stderr);
        }
        finally
        {
            File.Delete(profile);
        }
    }

    [Fact]
    public async Task Run_SigsysWithoutAKillingProfile_IsOnlySignaled()
    {
        // The default profile never kills, so a SIGSYS the command sends itself is its own doing.
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["/bin/sh", "-c", "kill -SYS $$"]);

        Assert.Equal(VerdictStatus.Signaled, verdict.Status);
        Assert.Equal(31, verdict.Signal);
        Assert.Empty(verdict.Violations);
    }

    [Fact]
    public async Task Run_OrdinaryProgram_HasNoViolations()
    {
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["python3", "-c", "import json, os, socket, subprocess; print(subprocess.run(['ls', '/'], capture_output=True).returncode)"]);
        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.Equal("0\n", verdict.Stdout.Text);
        Assert.Empty(verdict.Violations);
    }

    [Fact]
    public async Task Run_StrictProfile_RefusesInternetSockets()
    {
        var policy = SandboxPolicy.Default with { SeccompProfile = "strict" };
        Verdict verdict = await Sandbox.RunAsync(policy, ["python3", "-c", "import socket\ntry:\n  socket.socket()\n  print('open')\nexcept OSError as e:\n  print(e.errno)"]);
        Assert.Equal("97\n", verdict.Stdout.Text); // EAFNOSUPPORT
    }

    [Fact]
    public async Task Run_UnconfinedProfile_RunsWithoutAFilter()
    {
        var policy = SandboxPolicy.Default with { SeccompProfile = "unconfined" };
        Verdict verdict = await Sandbox.RunAsync(policy, ["/bin/sh", "-c", "grep ^Seccomp: /proc/self/status"]);
        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.Equal("Seccomp:\t0\n", verdict.Stdout.Text);
        Assert.Empty(verdict.Violations);
    }

    [Fact]
    public async Task Run_DefaultProfile_FiltersTheCommand()
    {
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["/bin/sh", "-c", "grep ^Seccomp: /proc/self/status"]);
        Assert.Equal("Seccomp:\t2\n", verdict.Stdout.Text);
    }

    [Fact]
    public void Cli_UnconfinedProfile_TurnsFilteringOffAndSaysWhereFrom()
    {
        CliResult run = ConfineCli.Run(["run", "--seccomp", "unconfined", "--", "/bin/sh", "-c", "grep ^Seccomp: /proc/self/status"]);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal("Seccomp:\t0\n", run.Stdout);

        CliResult show = ConfineCli.Run(["policy", "show", "--seccomp", "unconfined"]);
        Assert.Equal(0, show.ExitCode);
        Assert.Contains("\"seccomp_profile\": \"flag:--seccomp\"", show.Stdout);
    }

    [Fact]
    public void Cli_OnViolation_RunsTheHookWithTheViolationAsJson()
    {
        string log = Path.Combine(Path.GetTempPath(), $"violations-{Guid.NewGuid():N}.jsonl");
        try
        {
            CliResult result = ConfineCli.Run(
                ["run", "--on-violation", $"cat >> {log}", "--", "/bin/sh", "-c", "unshare --user true; unshare --mount true; echo done"]);
            Assert.Equal(0, result.ExitCode);
            Assert.Equal("done\n", result.Stdout);

            string[] lines = File.ReadAllLines(log);
            Assert.Equal(2, lines.Length);
            Violation first = System.Text.Json.JsonSerializer.Deserialize<Violation>(lines[0])!;
            Assert.Equal("unshare", first.Syscall);
            Assert.Contains("CLONE_NEWUSER", first.Argument);
            Assert.True(first.Pid > 1);
            Assert.Contains("CLONE_NEWNS", lines[1]);

            // The same events are logged on stderr with their stable id.
            Assert.Contains("warning 1001 ViolationRecorded", result.Stderr);
        }
        finally
        {
            File.Delete(log);
        }
    }

    [Fact]
    public void Cli_OnViolationHookFails_IsReportedAndTheRunGoesOn()
    {
        CliResult result = ConfineCli.Run(["run", "--on-violation", "exit 3", "--", "/bin/sh", "-c", "unshare --user true; echo done"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("done\n", result.Stdout);
        Assert.Contains("--on-violation: 'exit 3' exited with 3", result.Stderr);
    }

    [Fact]
    public async Task Run_EndlessDistinctViolations_AreCappedAndAnnouncedOncePerKind()
    {
        // ptrace with a new request number each time: every call is a kind of its own.
        const string Loop = "import ctypes\nlibc = ctypes.CDLL(None)\nfor i in range(2000): libc.ptrace(0x10000000 + i, 0, 0, 0)\nprint('done')";
        var announced = new ConcurrentQueue<Violation>();
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["python3", "-c", Loop], new SandboxIO { OnViolation = announced.Enqueue });

        Assert.Equal("done\n", verdict.Stdout.Text);
        Assert.Equal(256, verdict.Violations.Length);
        Violation overflow = verdict.Violations[^1];
        Assert.Equal("more", overflow.Syscall);
        Assert.Equal(2000, verdict.Violations.Sum(v => v.Count));
        Assert.Equal(256, announced.Count);
    }

    [Fact]
    public async Task Run_RepeatedViolation_IsAnnouncedOnce()
    {
        var announced = new ConcurrentQueue<Violation>();
        Verdict verdict = await Sandbox.RunAsync(
            SandboxPolicy.Default, ["/bin/sh", "-c", "for i in 1 2 3 4 5; do unshare --user true; done; true"], new SandboxIO { OnViolation = announced.Enqueue });

        Assert.Equal(5, Assert.Single(verdict.Violations, v => v.Syscall == "unshare").Count);
        Assert.Single(announced, v => v.Syscall == "unshare");
    }

    [Fact]
    public async Task Run_BlockingViolationHandlers_DoNotDelayOtherRuns()
    {
        // More handlers blocked at once than the thread pool has threads: were they called on the pool,
        // the rest of them, and the other run's continuations, would queue behind them and wait for
        // the pool to grow, about one thread every half second.
        int blockedRuns = ThreadPool.ThreadCount + 12;
        using var release = new ManualResetEventSlim();
        int entered = 0;
        var io = new SandboxIO
        {
            OnViolation = _ =>
            {
                Interlocked.Increment(ref entered);
                release.Wait();
            },
        };

        Task<Verdict>[] blocked = [.. Enumerable.Range(0, blockedRuns)
            .Select(_ => Sandbox.RunAsync(SandboxPolicy.Default, ["unshare", "--user", "true"], io))];
        try
        {
            var waited = Stopwatch.StartNew();
            while (Volatile.Read(ref entered) < blockedRuns && waited.Elapsed < TimeSpan.FromSeconds(3))
            {
                await Task.Delay(10);
            }

            int enteredInTime = Volatile.Read(ref entered);
            var other = Stopwatch.StartNew();
            Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["unshare", "--mount", "true"]);
            other.Stop();

            Assert.Equal(blockedRuns, enteredInTime);
            Assert.Contains(verdict.Violations, v => v.Syscall == "unshare");
            Assert.True(
                other.Elapsed < TimeSpan.FromSeconds(2), $"the other run took {other.Elapsed.TotalSeconds:0.0} s");
        }
        finally
        {
            release.Set();
            await Task.WhenAll(blocked);
        }

        // The blocked runs waited for their own handlers, and only for them.
        Assert.All(blocked, run => Assert.Single(run.Result.Violations, v => v.Syscall == "unshare"));
    }

    [Fact]
    public void Cli_OnViolationWithManyKinds_RunsAtMost32Hooks()
    {
        string log = Path.Combine(Path.GetTempPath(), $"violations-{Guid.NewGuid():N}.jsonl");
        try
        {
            const string Loop = "import ctypes\nlibc = ctypes.CDLL(None)\nfor i in range(40): libc.ptrace(0x10000000 + i, 0, 0, 0)";
            CliResult result = ConfineCli.Run(["run", "--on-violation", $"cat >> {log}", "--", "python3", "-c", Loop]);

            Assert.Equal(0, result.ExitCode);
            Assert.Equal(32, File.ReadAllLines(log).Length);
            Assert.Contains("more than 32 kinds of violation", result.Stderr);
        }
        finally
        {
            File.Delete(log);
        }
    }
}
