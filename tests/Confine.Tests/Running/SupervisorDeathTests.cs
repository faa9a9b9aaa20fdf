using Confine.Tests.Support;
using static Confine.Tests.Support.SandboxTesting;

namespace Confine.Tests.Running;

/// <summary>A sandbox must not outlive the Confine that started it, however Confine dies.</summary>
[Trait("Category", "Run")]
public sealed class SupervisorDeathTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SupervisorKilled_SandboxDiesWithIt(bool unprivileged)
    {
        string marker = NewMarker();
        // An ordinary user cannot have the default level's cgroup limits here: degrade rather than fail.
        using var cli = ConfineCli.Start(
            ["run", "--allow-degrade", "--", "/bin/sh", "-c", $"(setsid sleep {marker} &); sleep {marker}"], unprivileged);
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
            Assert.Contains("Confine.Cli.dll", File.ReadAllText($"/proc/{pid}/cmdline"));
        }

        cli.Kill();
        cli.WaitForExit();
        Assert.True(WaitUntilGone(marker, TimeSpan.FromSeconds(3)), "the sandbox outlived its supervisor");
    }
}
