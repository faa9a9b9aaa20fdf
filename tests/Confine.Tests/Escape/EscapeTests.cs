namespace Confine.Tests.Escape;

/// <summary>
/// The escape suite: every probe of probe.c, each an example of a kind of escape, must be refused under
/// every <see cref="EscapeConfiguration"/> (root and rootless, each isolation level). The accepted
/// outcomes list every errno that means "refused" for that call; "ok" is never among them for a
/// dangerous call, except where a level documents a difference (<see cref="EscapeProbes.Accepted"/>).
/// After every run the host is read again: nothing the probes aim at may have changed.
/// </summary>
[Trait("Category", "Escape")]
// Run again on the published command by scripts/test.sh (see ConfineCli).
[Trait("Command", "confine")]
[Collection(EscapeCollection.Name)]
public sealed class EscapeTests
{
    private readonly EscapeProbeFixture _fixture;

    public EscapeTests(EscapeProbeFixture fixture) => _fixture = fixture;

    public static TheoryData<string, string> Probes
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (EscapeConfiguration configuration in EscapeConfiguration.All)
            {
                foreach (EscapeProbe probe in EscapeProbes.All)
                {
                    data.Add(configuration.Name, probe.Name);
                }
            }

            return data;
        }
    }

    public static TheoryData<string, string> RecordedProbes
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (EscapeConfiguration configuration in EscapeConfiguration.All)
            {
                foreach (EscapeProbe probe in EscapeProbes.All.Where(p => p.Syscall is not null))
                {
                    data.Add(configuration.Name, probe.Name);
                }
            }

            return data;
        }
    }

    public static TheoryData<string> Configurations => new(EscapeConfiguration.All.Select(c => c.Name));

    [Theory]
    [MemberData(nameof(Probes))]
    public void Probe_UnderEachConfiguration_IsRefused(string configuration, string probe)
    {
        EscapeConfiguration under = EscapeConfiguration.Named(configuration);
        EscapeProbe expected = EscapeProbes.Named(probe);
        (string? outcome, EscapeRun run) = _fixture.Outcome(configuration, probe);
        string accepted = EscapeProbes.Accepted(under, expected);

        // Under maximum the supervisor kills the sandbox on the violation; the probe may or may not have
        // printed the refusal first.
        if (under.KillsOnViolation && expected.Syscall is not null)
        {
            accepted += " killed";
        }

        Assert.True(outcome is not null, $"{probe}: the probe printed nothing ({Describe(run)})");
        Assert.True(accepted.Split(' ').Contains(outcome), $"{probe}: got '{outcome}', expected one of '{accepted}' ({Describe(run)})");
    }

    [Theory]
    [MemberData(nameof(RecordedProbes))]
    public void Probe_DangerousCall_IsInTheVerdictsViolations(string configuration, string probe)
    {
        EscapeConfiguration under = EscapeConfiguration.Named(configuration);
        string syscall = EscapeProbes.Named(probe).Syscall!;
        (_, EscapeRun run) = _fixture.Outcome(configuration, probe);

        Assert.Contains(run.Verdict.Violations, v => v.Syscall == syscall);
        if (under.KillsOnViolation)
        {
            // One probe in the run, and the run ended for it.
            Assert.Equal([probe], run.Probes);
            Assert.Equal(VerdictStatus.Violation, run.Verdict.Status);
        }
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void Runs_WithoutARecordedCall_EndNormally(string configuration)
    {
        // Whatever a group tried (kill(1, SIGKILL), kill(-1, SIGKILL) among them), the probe itself
        // must still get to "done" and end normally.
        bool killsOnViolation = EscapeConfiguration.Named(configuration).KillsOnViolation;
        foreach (EscapeRun run in _fixture.Runs[configuration]
                     .Where(r => !killsOnViolation || r.Probes.All(p => EscapeProbes.Named(p).Syscall is null)))
        {
            Assert.True(run.Verdict.Status == VerdictStatus.Ok, $"{run.Group}: {Describe(run)}");
            Assert.Equal("value=1", run.Outcomes.GetValueOrDefault("done"));
        }
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void Runs_EachRun_LeavesTheHostUnchanged(string configuration)
    {
        foreach (EscapeRun run in _fixture.Runs[configuration])
        {
            Assert.True(run.HostChanges.Count == 0, $"after {string.Join(',', run.Probes)}: {string.Join("; ", run.HostChanges)}");
        }
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void Probe_KillAll_ReachesOnlyTheSandbox(string configuration)
    {
        (string? killed, EscapeRun run) = _fixture.Outcome(configuration, "kill_all");

        // kill(-1, SIGKILL) succeeded inside and took the probe's own child with it...
        Assert.Equal("ok", killed);
        Assert.Equal("value=9", run.Outcomes.GetValueOrDefault("kill_all_reached_own_child"));

        // ...while the host processes running under the sandbox's own host ids, which only the PID
        // namespace keeps out of reach, lived through it.
        Assert.DoesNotContain(run.HostChanges, c => c.StartsWith("host process", StringComparison.Ordinal));
        Assert.All(_fixture.Survivors, s => Assert.False(s.HasExited, $"host process {s.Id} was killed"));
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void Runs_HostServices_ReachedOnlyWhereTheNetworkIsShared(string configuration)
    {
        // development shares the host's network by design: one connection each from its probe.
        int expected = EscapeConfiguration.Named(configuration).SharesHostNetwork ? 1 : 0;
        Assert.Equal(expected, _fixture.Runs[configuration].Sum(r => r.TcpConnectionsAccepted));
        Assert.Equal(expected, _fixture.Runs[configuration].Sum(r => r.AbstractConnectionsAccepted));
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void Probes_EveryLinePrinted_IsExpected(string configuration)
    {
        foreach (EscapeRun run in _fixture.Runs[configuration])
        {
            foreach (string printed in run.Outcomes.Keys.Where(k => k != "done"))
            {
                Assert.Contains(EscapeProbes.All, p => p.Name == printed);
            }
        }
    }

    private static string Describe(EscapeRun run) =>
        $"status {run.Verdict.Status}, violations [{string.Join("; ", run.Verdict.Violations.Select(v => $"{v.Syscall} {v.Argument}"))}], "
        + $"error {run.Verdict.Error?.Message}, stderr {run.Verdict.Stderr.Text}";
}
