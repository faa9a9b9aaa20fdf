using Confine.Tests.Support;
using static Confine.Tests.Support.SandboxTesting;

namespace Confine.Tests.Isolation;

/// <summary>
/// The same isolation facts for Confine run by an ordinary user: the CLI runs as uid 65534
/// through setpriv, so the rootless id mapping and the nested user namespace are what is tested.
/// </summary>
[Trait("Category", "Isolation")]
// Run again on the published command by scripts/test.sh (see ConfineCli).
[Trait("Command", "confine")]
[Trait("Requirement", "Rootless")]
public sealed class RootlessIsolationTests
{
    [Fact]
    public void Run_AsUnprivilegedUser_IsIsolatedInEveryNamespace()
    {
        string marker = NewMarker();
        using var hostProcess = System.Diagnostics.Process.Start("sleep", marker);
        try
        {
            CliResult result = ConfineCli.Run(["run", "--allow-degrade", "--json", "--", "/bin/sh", "-c", IsolationProbe.Script], unprivileged: true);
            Assert.True(result.ExitCode == 0, result.Stdout + result.Stderr);
            Verdict verdict = VerdictJson.Deserialize(result.Stdout);
            Dictionary<string, string> facts = IsolationTests.Facts(verdict.Stdout.Text);
            IsolationTests.AssertIsolated(facts, marker);
            Assert.Equal("0", facts["uid"]);
        }
        finally
        {
            hostProcess.Kill();
            hostProcess.WaitForExit();
        }
    }

    [Fact]
    public void Run_AsUnprivilegedUserWithUser_RunsAsThatIdInside()
    {
        CliResult result = ConfineCli.Run(
            ["run", "--allow-degrade", "--user", "1000:1000", "--", "/bin/sh", "-c", "id -u; id -g; grep CapEff /proc/self/status; touch /tmp/x && echo wrote"],
            unprivileged: true);
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(["1000", "1000", "CapEff:\t0000000000000000", "wrote"], result.Stdout.Trim().Split('\n'));
    }

    [Fact]
    public void Run_AsUnprivilegedUserWithTimeout_KillsDoubleForkedDaemon()
    {
        string marker = NewMarker();
        CliResult result = ConfineCli.Run(
            ["run", "--allow-degrade", "--timeout", "1s", "--", "/bin/sh", "-c", $"setsid sh -c 'sleep {marker} & sleep {marker}' & sleep {marker}"],
            unprivileged: true);
        Assert.Equal(124, result.ExitCode);
        Assert.True(WaitUntilGone(marker, TimeSpan.FromSeconds(2)), "a sandboxed process outlived the run");
    }

    [Fact]
    public void Run_AsUnprivilegedUserKillingEverything_ReachesOnlyTheSandbox()
    {
        // A host process of the same unprivileged user: outside a PID namespace, kill(-1) would reach it.
        string marker = NewMarker();
        using var sameUser = System.Diagnostics.Process.Start("setpriv",
            [$"--reuid={ConfineCli.UnprivilegedId}", $"--regid={ConfineCli.UnprivilegedId}", "--clear-groups", "sleep", marker]);
        try
        {
            CliResult result = ConfineCli.Run(["run", "--allow-degrade", "--", "/bin/sh", "-c", "kill -9 -1; sleep 0.2; echo survived"], unprivileged: true);
            Assert.False(sameUser.HasExited, "a host process of the same user was killed from inside the sandbox");
            Assert.NotEqual(125, result.ExitCode);
        }
        finally
        {
            sameUser.Kill();
            sameUser.WaitForExit();
        }
    }

    [Fact]
    public void Run_AsUnprivilegedUser_SetsHostnameInsideOnlyAndLeavesHostMountsAlone()
    {
        string hostname = File.ReadAllText("/proc/sys/kernel/hostname");
        string[] mounts = HostMounts();

        CliResult result = ConfineCli.Run(["run", "--allow-degrade", "--hostname", "judge-7", "--", "/bin/sh", "-c", "hostname; mount 2>/dev/null; true"], unprivileged: true);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.StartsWith("judge-7\n", result.Stdout);
        Assert.Equal(hostname, File.ReadAllText("/proc/sys/kernel/hostname"));
        Assert.Equal(mounts, HostMounts());
    }

    [Fact]
    public void Run_AsUnprivilegedUser_BindsAreReadOnlyUnlessAskedAndWritesReachTheHost()
    {
        string dir = Directory.CreateTempSubdirectory("confine-rootless-bind-").FullName;
        try
        {
            File.SetUnixFileMode(dir, (UnixFileMode)0x1ff);
            File.WriteAllText(Path.Combine(dir, "input.txt"), "from host");
            File.SetUnixFileMode(Path.Combine(dir, "input.txt"), (UnixFileMode)0x1a4);

            CliResult result = ConfineCli.Run(
                ["run", "--allow-degrade", "-v", $"{dir}:/in", "-v", $"{dir}:/out:rw", "--", "/bin/sh", "-c",
                 "cat /in/input.txt; echo; echo x > /in/new 2>/dev/null || echo denied; echo result > /out/answer.txt"],
                unprivileged: true);

            Assert.True(result.ExitCode == 0, result.Stderr);
            Assert.Equal("from host\ndenied\n", result.Stdout);
            Assert.False(File.Exists(Path.Combine(dir, "new")));
            Assert.Equal("result\n", File.ReadAllText(Path.Combine(dir, "answer.txt")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Run_AsUnprivilegedUserWithLandlock_RefusesWhatTheMountsAloneAllow()
    {
        CliResult result = ConfineCli.Run(
            ["run", "--allow-degrade", "--landlock", "--", "/bin/sh", "-c", "touch /dev/extra 2>&1 || true; echo data > /tmp/f && cat /tmp/f"],
            unprivileged: true);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("Permission denied", result.Stdout);
        Assert.EndsWith("data\n", result.Stdout);
    }

    [Fact]
    public void Run_AsUnprivilegedUser_KeepsNoSeccompCacheASandboxCouldRewrite()
    {
        // The unprivileged CLI runs with HOME=/tmp; a cache there would be the user's, and so any
        // sandbox's with a writable bind of it.
        string cache = "/tmp/.cache/confine";
        if (Directory.Exists(cache))
        {
            Directory.Delete(cache, recursive: true);
        }

        CliResult result = ConfineCli.Run(["run", "--allow-degrade", "--", "true"], unprivileged: true);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.False(Directory.Exists(cache), "an unprivileged Confine kept compiled seccomp programs where its sandboxes can write");
    }
}
