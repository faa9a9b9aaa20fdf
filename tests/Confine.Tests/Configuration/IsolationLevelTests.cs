using Confine.Tests.Support;
using static Confine.Tests.Support.SandboxTesting;

namespace Confine.Tests.Configuration;

/// <summary>The three presets: each is a valid policy, holds the values the levels promise, and really runs.</summary>
[Trait("Category", "Configuration")]
public sealed class IsolationLevelTests
{
    public static TheoryData<IsolationLevel> Levels => [.. IsolationLevels.All];

    [Theory]
    [MemberData(nameof(Levels))]
    public void Policy_EveryLevel_Validates(IsolationLevel level)
    {
        PolicyValidator.Validate(IsolationLevels.Policy(level));
        Assert.Equal(level, IsolationLevels.Parse("level", IsolationLevels.Name(level)));
    }

    [Fact]
    public void Parse_UnknownLevel_NamesTheKeyAndTheChoices()
    {
        PolicyException error = Assert.Throws<PolicyException>(() => IsolationLevels.Parse("level", "paranoid"));
        Assert.Equal("level", error.Path);
        Assert.Contains("maximum, balanced or development", error.Reason);
    }

    [Fact]
    public void Policy_Maximum_HasTheStrictSettings()
    {
        SandboxPolicy maximum = IsolationLevels.Policy(IsolationLevel.Maximum);
        Assert.Equal(NetworkMode.None, maximum.Network);
        Assert.Equal(256L << 20, maximum.Resources.MemoryBytes);
        Assert.Null(maximum.Resources.MemorySwapBytes);
        Assert.Equal(64, maximum.Resources.PidsLimit);
        Assert.Equal(TimeSpan.FromSeconds(10), maximum.Timeout);
        Assert.Equal(TimeSpan.FromSeconds(10), maximum.Resources.CpuTime);
        Assert.Equal([new TmpfsMount("/tmp", 16L << 20)], maximum.Tmpfs.ToArray());
        Assert.Equal(1L << 20, maximum.StdoutLimitBytes);
        Assert.Equal(1L << 20, maximum.StderrLimitBytes);
        Assert.Equal(("strict", ViolationAction.Kill, true, false),
            (maximum.SeccompProfile, maximum.OnViolation, maximum.Landlock, maximum.AllowDegrade));
        Assert.DoesNotContain("/etc", maximum.SystemPaths);
    }

    [Fact]
    public void Policy_Balanced_HasTheModerateSettings()
    {
        SandboxPolicy balanced = IsolationLevels.Policy(IsolationLevel.Balanced);
        Assert.Equal(IsolationLevel.Balanced, IsolationLevels.Default);
        Assert.Equal(NetworkMode.None, balanced.Network);
        Assert.Equal(1L << 30, balanced.Resources.MemoryBytes);
        Assert.Equal(512, balanced.Resources.PidsLimit);
        Assert.Null(balanced.Timeout);
        Assert.Equal([new TmpfsMount("/tmp", 256L << 20)], balanced.Tmpfs.ToArray());
        Assert.Equal(16L << 20, balanced.StdoutLimitBytes);
        Assert.Equal(("default", ViolationAction.Record), (balanced.SeccompProfile, balanced.OnViolation));
        Assert.Contains("/etc", balanced.SystemPaths);
    }

    [Fact]
    public void Policy_Development_IsRelaxedButStillMapped()
    {
        SandboxPolicy development = IsolationLevels.Policy(IsolationLevel.Development);
        Assert.Equal(NetworkMode.Host, development.Network);
        Assert.Equal(4L << 30, development.Resources.MemoryBytes);
        Assert.Equal(4096, development.Resources.PidsLimit);
        Assert.Equal(("permissive", ViolationAction.Record), (development.SeccompProfile, development.OnViolation));
        Assert.Equal(SandboxPolicy.Default.HostIdBase, development.HostIdBase);
        Assert.NotEqual(0u, development.HostIdBase);
    }

    [Fact]
    public void Default_IsUnchangedAndHasNoCgroupLimits()
    {
        Assert.False(SandboxPolicy.Default.Resources.NeedsCgroup);
        Assert.True(IsolationLevels.Policy(IsolationLevel.Balanced).Resources.NeedsCgroup);
    }

    [Fact]
    public async Task Run_Maximum_RunsPythonAndShell()
    {
        SandboxPolicy maximum = IsolationLevels.Policy(IsolationLevel.Maximum);
        Verdict python = await Sandbox.RunAsync(maximum, ["python3", "-c", "print(1)"]);
        Assert.True(python.Status == VerdictStatus.Ok, VerdictJson.Serialize(python));
        Assert.Equal("1\n", python.Stdout.Text);

        Verdict shell = await RunShellAsync("echo ok", maximum);
        Assert.Equal(VerdictStatus.Ok, shell.Status);
        Assert.Equal("ok\n", shell.Stdout.Text);
    }

    [Fact]
    public async Task Run_Maximum_SeesOnlyTheSystemAndNothingOfTheHostsConfiguration()
    {
        Verdict verdict = await RunShellAsync(
            "ls /; echo --; ls /etc; echo --; for f in /etc/passwd /etc/hosts /etc/resolv.conf /home; do [ -e $f ] && echo $f; done; true",
            IsolationLevels.Policy(IsolationLevel.Maximum));
        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        string[] parts = verdict.Stdout.Text!.Split("--\n");
        Assert.Equal("bin dev etc lib lib64 proc sbin tmp usr", string.Join(' ', parts[0].Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Equal("alternatives ld.so.cache", string.Join(' ', parts[1].Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Equal("", parts[2].Trim());
    }

    [Fact]
    public async Task Run_Development_SeesHostNetworkAndMoreDirectories()
    {
        int hostInterfaces = File.ReadAllLines("/proc/net/dev").Length - 2;
        Verdict verdict = await RunShellAsync(
            "tail -n +3 /proc/net/dev | wc -l; ls -d /opt /srv /var",
            IsolationLevels.Policy(IsolationLevel.Development));
        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.Equal($"{hostInterfaces}\n/opt\n/srv\n/var\n", verdict.Stdout.Text);
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public async Task Run_EveryLevel_SandboxRootIsNoHostRoot(IsolationLevel level)
    {
        Verdict verdict = await RunShellAsync("id -u; cat /proc/self/uid_map /proc/self/gid_map", IsolationLevels.Policy(level));
        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        string[] lines = verdict.Stdout.Text!.Trim().Split('\n');
        Assert.Equal("0", lines[0]);
        foreach (string map in lines[1..])
        {
            // inside-start outside-start count: no mapped range may contain host id 0.
            long[] fields = [.. map.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse)];
            Assert.True(fields[1] > 0, $"sandbox ids map onto host root: {map}");
        }
    }

    [Fact]
    public void Run_DevelopmentWithRootUserAndHostNetwork_ProcessIsNotHostRoot()
    {
        string marker = NewMarker();
        using var cli = ConfineCli.Start(["run", "--level", "development", "-u", "0:0", "--network", "host", "--", "sleep", marker]);
        try
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            List<int> found;
            while ((found = HostProcessesWith(marker, "sleep")).Count == 0 && clock.Elapsed < TimeSpan.FromSeconds(20))
            {
                Thread.Sleep(20);
            }

            int pid = Assert.Single(found);
            string uids = File.ReadAllLines($"/proc/{pid}/status").Single(l => l.StartsWith("Uid:", StringComparison.Ordinal));
            Assert.All(uids.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1..], id => Assert.NotEqual("0", id));
        }
        finally
        {
            cli.Kill(entireProcessTree: true);
            cli.WaitForExit();
        }

        Assert.True(WaitUntilGone(marker, TimeSpan.FromSeconds(3)));
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(uint.MaxValue - 65536)]
    public void Validate_HostIdBaseThatReachesRootOrOverflows_IsRefused(uint hostIdBase)
    {
        PolicyException error = Assert.Throws<PolicyException>(
            () => PolicyValidator.Validate(SandboxPolicy.Default with { HostIdBase = hostIdBase }));
        Assert.Equal("host_id_base", error.Path);
    }
}
