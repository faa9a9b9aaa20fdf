using Confine.Tests.Support;
using static Confine.Tests.Support.SandboxTesting;

namespace Confine.Tests.Running;

/// <summary>A sandbox must not outlive the Confine that started it, however Confine dies.</summary>
[Trait("Category", "Run")]
// Run again on the published command by scripts/test.sh (see ConfineCli).
[Trait("Command", "confine")]
public sealed class SupervisorDeathTests
{
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void SupervisorKilled_SandboxDiesWithIt(bool unprivileged, bool withTimeout)
    {
        string marker = NewMarker();
        // An ordinary user cannot have the default level's cgroup limits here: degrade rather than fail.
        string[] timeout = withTimeout ? ["--timeout", "30s"] : [];
        using var cli = ConfineCli.Start(
            ["run", "--allow-degrade", .. timeout, "--", "/bin/sh", "-c", $"(setsid sleep {marker} &); sleep {marker}"], unprivileged);
        try
        {
            KillSupervisorAndCheck(cli, marker, unprivileged);
        }
        finally
        {
            // A failed check must not leave the run behind for the length of its sleep.
            if (!cli.HasExited)
            {
                cli.Kill(entireProcessTree: true);
            }
        }
    }

    private static void KillSupervisorAndCheck(System.Diagnostics.Process cli, string marker, bool unprivileged)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (HostProcessesWith(marker, "sleep").Count < 2 && clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            Thread.Sleep(20);
        }

        Assert.Equal(2, HostProcessesWith(marker, "sleep").Count);

        // SIGKILL leaves Confine no chance to clean up: the helper must notice on its own.
        int pid = cli.Id;
        if (unprivileged)
        {
            // setpriv execs the CLI, so the pid is the CLI's own.
            Assert.Contains(ConfineCli.PublishedCommand ?? "Confine.Cli.dll", File.ReadAllText($"/proc/{pid}/cmdline"));
        }

        cli.Kill();
        cli.WaitForExit();
        Assert.True(WaitUntilGone(marker, TimeSpan.FromSeconds(3)), "the sandbox outlived its supervisor");
    }

    [Theory]
    [InlineData("SIGINT", 2)]
    [InlineData("SIGTERM", 15)]
    [InlineData("SIGHUP", 1)]
    public void SupervisorInterrupted_KillsTheSandboxAndStillGivesAVerdict(string name, int signal)
    {
        string marker = NewMarker();
        // Started in a process group of its own, so the signal can go to the whole group as ^C does.
        using var cli = ConfineCli.Start(["run", "--json", "--", "/bin/sh", "-c", $"sleep {marker}"], newProcessGroup: true);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (HostProcessesWith(marker, "sleep").Count < 1 && clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            Thread.Sleep(20);
        }

        Assert.Single(HostProcessesWith(marker, "sleep"));
        Assert.Equal(0, kill(-cli.Id, signal));
        string stdout = cli.StandardOutput.ReadToEnd();
        Assert.True(cli.WaitForExit(10_000), $"confine did not end after {name}");

        Assert.Equal(137, cli.ExitCode);
        Assert.Equal(VerdictStatus.Cancelled, VerdictJson.Deserialize(stdout).Status);
        Assert.True(WaitUntilGone(marker, TimeSpan.FromSeconds(3)), $"the sandbox outlived {name}");
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);
}
