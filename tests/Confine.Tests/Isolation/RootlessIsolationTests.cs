using Confine.Tests.Support;
using static Confine.Tests.Support.SandboxTesting;

namespace Confine.Tests.Isolation;

/// <summary>
/// The same isolation facts for Confine run by an ordinary user: the CLI runs as uid 65534
/// through setpriv, so the rootless id mapping and the nested user namespace are what is tested.
/// </summary>
[Trait("Category", "Isolation")]
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
}
