using System.Diagnostics;
using Confine.Cgroups;
using Confine.Native;
using Confine.Tests.Support;

namespace Confine.Tests.Cgroups;

/// <summary>
/// Limits enforced on whole sandboxes through their cgroups: the proofs that a memory bomb, a fork
/// bomb, a CPU spinner and a disk writer are held, and that no cgroup outlives its run.
/// </summary>
[Collection(CgroupCollection.Name)]
[Trait("Category", "Cgroup")]
public sealed class SandboxLimitsTests
{
    private const long MiB = 1L << 20;

    /// <summary>
    /// Where the tests' sandboxes get their cgroups: beneath this process's own cgroup, except on a
    /// v2 host whose own cgroup holds processes and so cannot give controllers to children.
    /// </summary>
    private static string? CgroupParent
    {
        get
        {
            CgroupHierarchy? memory = CgroupTestEnvironment.RealHost?.HierarchyOf(CgroupController.Memory);
            if (memory is null || memory.Version == CgroupVersion.V1)
            {
                return null;
            }

            string? parent = CgroupTestEnvironment.PrivateParentPath(memory);
            return parent == memory.OwnPath ? null : parent;
        }
    }

    private static SandboxPolicy With(ResourceLimits limits) =>
        SandboxPolicy.Default with { Resources = limits with { CgroupParent = CgroupParent } };

    [CgroupFact]
    public async Task Run_MemoryBomb_EndsAsMemoryLimitWithPeakAtTheLimit()
    {
        var policy = With(new ResourceLimits { MemoryBytes = 64 * MiB });
        Verdict verdict = await Sandbox.RunAsync(policy, ["python3", "-c", "x = []\nwhile True: x.append(bytearray(1 << 20))"]);

        Assert.Equal(VerdictStatus.MemoryLimit, verdict.Status);
        Assert.Equal("memory", verdict.Limit?.Name);
        Assert.Equal("cgroup", verdict.MemoryPeakSource);
        Assert.InRange(verdict.MemoryPeakBytes, 48 * MiB, 65 * MiB);
        Assert.True(verdict.Resources!.OomKills >= 1);
        AssertNoCgroupLeft();
    }

    [CgroupFact]
    public async Task Run_ForkBomb_IsCappedByThePidsLimitAndTheHostStaysResponsive()
    {
        var policy = With(new ResourceLimits { PidsLimit = 32 }) with { Timeout = TimeSpan.FromSeconds(3) };
        // Every shell forks two more until fork fails; the limit, not the bomb, decides how many live.
        const string Bomb = "bomb() { bomb & bomb & wait; }; bomb";
        var clock = Stopwatch.StartNew();
        Verdict verdict = await Sandbox.RunAsync(policy, ["/bin/bash", "-c", Bomb]);

        Assert.Equal(VerdictStatus.Timeout, verdict.Status);
        Assert.InRange(verdict.Resources!.PidsPeak ?? 0, 2, 32);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10));
        using Process probe = Process.Start("true")!;
        Assert.True(probe.WaitForExit(5000), "the host could not start a process after the bomb");
        AssertNoCgroupLeft();
    }

    [CgroupFact]
    public async Task Run_CommandLeavesABackgroundChild_UsageIsInTheVerdictAndTheCgroupIsGone()
    {
        // The child holds 40 MiB and the command's stdout, and sleeps far longer than the test waits:
        // the run can end only through the sandbox's end, which kills it. The shell, the init's only
        // child, uses a few MiB, so a peak above 40 MiB is the cgroup's, read after the child was killed.
        string marker = SandboxTesting.NewMarker();
        string script =
            "python3 -c 'import sys, time; x = bytearray(40 << 20); open(\"/tmp/ready\", \"w\").close(); " +
            $"time.sleep(float(sys.argv[1]))' {marker} & " +
            "while [ ! -e /tmp/ready ]; do sleep 0.01; done; echo started";
        var clock = Stopwatch.StartNew();
        SandboxPolicy policy = With(new ResourceLimits { PidsLimit = 64 });
        Verdict verdict = await Sandbox.RunAsync(policy, ["/bin/sh", "-c", script]);

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the verdict took {clock.Elapsed}");
        Assert.True(verdict.Status == VerdictStatus.Ok, VerdictJson.Serialize(verdict));
        Assert.Equal("started\n", verdict.Stdout.Text);
        Assert.NotNull(verdict.Resources);
        Assert.Equal("cgroup", verdict.MemoryPeakSource);
        Assert.InRange(verdict.MemoryPeakBytes, 40 * MiB, 500 * MiB);
        AssertNoCgroupLeft();
        Assert.Empty(SandboxTesting.HostProcessesWith(marker, "python3"));
    }

    [CgroupFact]
    public async Task Run_HalfACpu_GetsAboutHalfACore()
    {
        var policy = With(new ResourceLimits { Cpus = 0.5 }) with { Timeout = TimeSpan.FromSeconds(2) };
        Verdict verdict = await Sandbox.RunAsync(policy, ["python3", "-c", "while True: pass"]);

        Assert.Equal(VerdictStatus.Timeout, verdict.Status);
        double share = verdict.CpuTimeSeconds / verdict.WallTimeSeconds;
        Assert.InRange(share, 0.35, 0.65);
        Assert.True(verdict.Resources!.CpuThrottledSeconds > 0);
    }

    [CgroupFact]
    public async Task Run_CpuTimeLimit_StopsASpinnerNearTheLimit()
    {
        var policy = With(new ResourceLimits { CpuTime = TimeSpan.FromMilliseconds(500) }) with { Timeout = TimeSpan.FromSeconds(10) };
        Verdict verdict = await Sandbox.RunAsync(policy, ["python3", "-c", "while True: pass"]);

        Assert.Equal(VerdictStatus.CpuTimeLimit, verdict.Status);
        Assert.Equal("cpu_time", verdict.Limit?.Name);
        Assert.InRange(verdict.CpuTimeSeconds, 0.45, 0.8);
        AssertNoCgroupLeft();
    }

    [CgroupFact(CgroupNeed.BlockDevice)]
    public async Task Run_DirectIoWrites_AreThrottledToTheSetBandwidth()
    {
        (string directory, BlockDevice device) = CgroupTestEnvironment.BlockDeviceDirectory!.Value;
        string scratch = Directory.CreateDirectory(Path.Combine(directory, $"io-{Guid.NewGuid():N}")).FullName;
        File.SetUnixFileMode(scratch, (UnixFileMode)0x1ff);
        try
        {
            var limits = new ResourceLimits { DeviceIo = [new DeviceIoLimit(device.ToString()) { WriteBps = 4 * MiB }] };
            var policy = With(limits) with { Binds = [new BindMount(scratch, "/out", Writable: true)] };
            Verdict verdict = await Sandbox.RunAsync(policy, ["dd", "if=/dev/zero", "of=/out/f", "bs=1M", "count=8", "oflag=direct"]);

            Assert.Equal(VerdictStatus.Ok, verdict.Status);
            double rate = 8 * MiB / verdict.WallTimeSeconds;
            Assert.InRange(rate, 1 * MiB, 6 * MiB); // the upper bound proves the throttle; start-up only lowers the rate
            Assert.True(verdict.Resources!.IoWriteBytes >= 8 * MiB);
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    [CgroupFact(CgroupNeed.BlockDevice)]
    public async Task Run_WritableLimit_ThrottlesTheDiskBehindAWritableBind()
    {
        (string directory, _) = CgroupTestEnvironment.BlockDeviceDirectory!.Value;
        string scratch = Directory.CreateDirectory(Path.Combine(directory, $"io-{Guid.NewGuid():N}")).FullName;
        File.SetUnixFileMode(scratch, (UnixFileMode)0x1ff);
        try
        {
            var limits = new ResourceLimits { DeviceIo = [new DeviceIoLimit(DeviceIoLimit.Writable) { WriteBps = 4 * MiB }] };
            var policy = With(limits) with { Binds = [new BindMount(scratch, "/out", Writable: true)] };
            Verdict verdict = await Sandbox.RunAsync(policy, ["dd", "if=/dev/zero", "of=/out/f", "bs=1M", "count=8", "oflag=direct"]);

            Assert.Equal(VerdictStatus.Ok, verdict.Status);
            double rate = 8 * MiB / verdict.WallTimeSeconds;
            Assert.InRange(rate, 1 * MiB, 6 * MiB); // the upper bound proves the throttle; start-up only lowers the rate
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    [CgroupFact]
    public async Task Run_WritableLimitWithoutWritableBinds_ThrottlesNothingAndRuns()
    {
        var limits = new ResourceLimits { DeviceIo = [new DeviceIoLimit(DeviceIoLimit.Writable) { WriteBps = 1 * MiB }] };
        Verdict verdict = await Sandbox.RunAsync(With(limits), ["dd", "if=/dev/zero", "of=/tmp/f", "bs=1M", "count=8"]);

        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.InRange(verdict.WallTimeSeconds, 0, 3);
    }

    /// <summary>
    /// A service given a cgroup v2 subtree (systemd's Delegate=yes) runs Confine as that cgroup's only
    /// process. cgroup v2 refuses to enable controllers below a cgroup with processes, so Confine must
    /// step into a leaf of its own cgroup before the sandbox's limits can be set.
    /// </summary>
    [CgroupFact(CgroupNeed.V2)]
    [Trait("Requirement", "CgroupV2")]
    public void Cli_AloneInADelegatedV2Cgroup_MovesIntoALeafAndEnforcesLimits()
    {
        CgroupHierarchy unified = CgroupTestEnvironment.RealHost!.Unified!;
        string parent = unified.DirectoryOf(CgroupTestEnvironment.PrivateParentPath(unified)!)!;
        Assert.Equal(Interop.Error.None, CgroupFiles.Write(Path.Join(parent, "cgroup.subtree_control"), "+memory +pids"));
        string delegated = Path.Join(parent, $"delegated-{Guid.NewGuid():N}");
        Directory.CreateDirectory(delegated);
        try
        {
            var start = new System.Diagnostics.ProcessStartInfo("/bin/sh")
            {
                ArgumentList =
                {
                    "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", delegated,
                    ConfineCli.DotnetHost, ConfineCli.CliAssembly, "run", "--json", "--memory", "32m", "--pids-limit", "20",
                    "--", "python3", "-c", "x = bytearray(64 << 20)",
                },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using var cli = System.Diagnostics.Process.Start(start)!;
            Task<string> stderr = cli.StandardError.ReadToEndAsync();
            string stdout = cli.StandardOutput.ReadToEnd();
            Assert.True(cli.WaitForExit(60_000));

            Assert.True(cli.ExitCode == 137, $"exit {cli.ExitCode}; stderr: {stderr.Result}; stdout: {stdout}");
            Verdict verdict = VerdictJson.Deserialize(stdout);
            Assert.Equal(VerdictStatus.MemoryLimit, verdict.Status);
            Assert.Empty(verdict.Weakened);
            Assert.True(Directory.Exists(Path.Join(delegated, "confine-supervisor")));
            Assert.Equal("+memory +pids", string.Join(' ',
                File.ReadAllText(Path.Join(delegated, "cgroup.subtree_control")).Split(' ', StringSplitOptions.TrimEntries)
                    .Where(c => c is "memory" or "pids").Order().Select(c => "+" + c)));
        }
        finally
        {
            foreach (string directory in Directory.GetDirectories(delegated, "*", SearchOption.AllDirectories).Reverse().Append(delegated))
            {
                for (int i = 0; i < 100 && CgroupSyscalls.Rmdir(directory) == Interop.Error.EBUSY; i++)
                {
                    Thread.Sleep(20);
                }
            }
        }
    }

    [CgroupFact]
    public async Task Run_WithCgroup_SeesItsOwnCgroupAsTheRoot()
    {
        var policy = With(new ResourceLimits { PidsLimit = 100 });
        Verdict verdict = await Sandbox.RunAsync(policy, ["cat", "/proc/self/cgroup"]);
        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        foreach (string line in verdict.Stdout.Text!.Trim().Split('\n'))
        {
            Assert.EndsWith(":/", line);
        }
    }

    [CgroupFact]
    public async Task Run_ImpossibleBindWithLimits_ReportsTheMountNotTheCgroup()
    {
        SandboxPolicy policy = With(new ResourceLimits { PidsLimit = 64 }) with
        {
            Binds = [new BindMount("/etc/hostname", "/usr/no-such-file-here")],
        };
        Verdict verdict = await Sandbox.RunAsync(policy, ["true"]);

        Assert.Equal(VerdictStatus.SetupFailed, verdict.Status);
        Assert.True(verdict.Error!.Step == "mount", VerdictJson.Serialize(verdict));
        Assert.DoesNotContain("cgroup", verdict.Error.Message);
    }

    [CgroupFact]
    public async Task Run_UsageSamples_ArriveWhileTheCommandRuns()
    {
        var samples = new System.Collections.Concurrent.ConcurrentQueue<UsageSample>();
        var io = new SandboxIO { OnUsage = samples.Enqueue, UsageInterval = TimeSpan.FromMilliseconds(100) };
        var policy = SandboxPolicy.Default with { Resources = new ResourceLimits { CgroupParent = CgroupParent } };
        Verdict verdict = await Sandbox.RunAsync(policy, ["python3", "-c", "import time\nx = bytearray(30 << 20)\nt = time.time()\nwhile time.time() - t < 0.6: pass"], io);

        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        // One sample per interval while the command runs, and none after it ended.
        Assert.InRange(samples.Count, 3, (int)(verdict.WallTimeSeconds / 0.1) + 2);
        Assert.Contains(samples, s => s.MemoryBytes >= 30 * MiB);
        Assert.True(samples.Last().CpuSeconds > samples.First().CpuSeconds);
    }

    [CgroupFact]
    public async Task Run_AfterAConfineDiedWithoutCleaningUp_RemovesItsStaleCgroup()
    {
        CgroupHierarchy memory = CgroupTestEnvironment.RealHost!.HierarchyOf(CgroupController.Memory)!;
        string parent = memory.DirectoryOf(CgroupParent ?? memory.OwnPath)!;
        // The name of a Confine whose pid is not running: start time 1 can belong to no live process here.
        string stale = Path.Combine(parent, "confine-4194000-1-run1");
        Directory.CreateDirectory(stale);

        // As the first run of a freshly started Confine would.
        Confine.Running.SandboxRun.ScanForStaleCgroupsOnNextRun();
        await Sandbox.RunAsync(With(new ResourceLimits { MemoryBytes = 64 * MiB }), ["true"]);
        Assert.False(Directory.Exists(stale), "the stale cgroup was not removed");
    }

    [CgroupFact]
    public async Task Run_UnknownCpusetCpu_IsRefusedNamingTheKey()
    {
        var policy = With(new ResourceLimits { CpusetCpus = "999" });
        PolicyException error = await Assert.ThrowsAsync<PolicyException>(() => Sandbox.RunAsync(policy, ["true"]));
        Assert.Equal("resources.cpuset_cpus", error.Path);
        AssertNoCgroupLeft();
    }

    private static void AssertNoCgroupLeft()
    {
        string prefix = $"confine-{Environment.ProcessId}-";
        foreach (CgroupHierarchy hierarchy in CgroupTestEnvironment.RealHost!.Hierarchies)
        {
            string? own = hierarchy.DirectoryOf(CgroupParent ?? hierarchy.OwnPath);
            if (own is not null && Directory.Exists(own))
            {
                Assert.Empty(Directory.GetDirectories(own, prefix + "*"));
            }
        }
    }
}
