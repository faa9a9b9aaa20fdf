using Confine.Cgroups;

namespace Confine.Tests.Cgroups;

/// <summary>
/// Impossible limits and missing controllers. Most of these need no cgroup at all: validation
/// happens before anything is created, and the unavailable cases use a host with no cgroups.
/// </summary>
[Trait("Category", "Cgroup")]
public sealed class SandboxCgroupValidationTests
{
    private const long MiB = 1L << 20;

    /// <summary>A host whose mountinfo shows no cgroup filesystem.</summary>
    private static readonly CgroupHost s_bareHost =
        new("22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n", "", "/nonexistent-root");

    public static TheoryData<string, ResourceLimits> ImpossibleLimits => new()
    {
        { "resources.memory", new ResourceLimits { MemoryBytes = 1 * MiB } },
        { "resources.memory", new ResourceLimits { MemoryBytes = 0 } },
        { "resources.memory_swap", new ResourceLimits { MemorySwapBytes = 128 * MiB } },
        { "resources.memory_swap", new ResourceLimits { MemoryBytes = 64 * MiB, MemorySwapBytes = 32 * MiB } },
        { "resources.cpus", new ResourceLimits { Cpus = 0 } },
        { "resources.cpus", new ResourceLimits { Cpus = -1 } },
        { "resources.cpus", new ResourceLimits { Cpus = 0.001 } },
        { "resources.cpus", new ResourceLimits { Cpus = double.NaN } },
        { "resources.cpus", new ResourceLimits { Cpus = 100_000 } },
        { "resources.cpuset_cpus", new ResourceLimits { CpusetCpus = "0-" } },
        { "resources.cpuset_cpus", new ResourceLimits { CpusetCpus = "3-1" } },
        { "resources.cpuset_cpus", new ResourceLimits { CpusetCpus = "60000" } },
        { "resources.cpu_time", new ResourceLimits { CpuTime = TimeSpan.Zero } },
        { "resources.pids_limit", new ResourceLimits { PidsLimit = 1 } },
        { "resources.device_io[0].write_bps", Io(new DeviceIoLimit("8:0") { WriteBps = 0 }) },
        { "resources.device_io[0].device", Io(new DeviceIoLimit("8:0")) },
        { "resources.device_io[1].read_bps", new ResourceLimits
            {
                DeviceIo = [new DeviceIoLimit("8:0") { ReadBps = 1 }, new DeviceIoLimit("8:0") { ReadBps = -5 }],
            }
        },
        { "resources.device_io[0].device", Io(new DeviceIoLimit("/no/such/disk") { ReadBps = 1 }) },
        { "resources.device_io[0].device", Io(new DeviceIoLimit("4095:1048575") { ReadBps = 1 }) },
        { "resources.cgroup_parent", new ResourceLimits { CgroupParent = "/a/../../b" } },
    };

    [Theory]
    [MemberData(nameof(ImpossibleLimits))]
    public void Create_ImpossibleLimit_ThrowsPolicyExceptionWithKey(string key, ResourceLimits limits)
    {
        // AllowUnenforced lets the bare host through the controller checks, to the value checks.
        PolicyException error = Assert.Throws<PolicyException>(
            () => SandboxCgroup.Create(s_bareHost, limits with { AllowUnenforced = true }, "invalid"));

        Assert.Equal(key, error.Path);
    }

    [Fact]
    public void Create_DeviceThatIsNotABlockDevice_SaysSo()
    {
        ResourceLimits limits = Io(new DeviceIoLimit("/dev/null") { ReadBps = 1 }) with { AllowUnenforced = true };

        PolicyException error = Assert.Throws<PolicyException>(() => SandboxCgroup.Create(s_bareHost, limits, "io"));

        Assert.Contains("not a block device", error.Reason);
    }

    [Fact]
    public void Create_MemoryLimitWithoutMemoryController_ThrowsCgroupUnavailable()
    {
        CgroupUnavailableException error = Assert.Throws<CgroupUnavailableException>(
            () => SandboxCgroup.Create(s_bareHost, new ResourceLimits { MemoryBytes = 64 * MiB }, "nomem"));

        Assert.Equal("resources.memory", error.Limit);
        Assert.Equal("memory", error.Controller);
        Assert.Contains("mount", error.Fix);
    }

    [Fact]
    public void Create_UnavailableLimitsAllowed_RecordsThemAndCreatesNothing()
    {
        var limits = new ResourceLimits
        {
            MemoryBytes = 64 * MiB,
            PidsLimit = 10,
            Cpus = 1,
            CpuTime = TimeSpan.FromSeconds(1),
            AllowUnenforced = true,
        };

        using SandboxCgroup cgroup = SandboxCgroup.Create(s_bareHost, limits, "allowed");

        Assert.Empty(cgroup.ProcsFiles);
        Assert.Equal(
            ["resources.cpu_time", "resources.cpus", "resources.memory", "resources.pids_limit"],
            cgroup.Unenforced.Select(u => u[..u.IndexOf(':')]).Order(StringComparer.Ordinal));
        Assert.Equal(-1, cgroup.ReadCpuUsageNanoseconds());
        CgroupUsage usage = cgroup.ReadUsage();
        Assert.Null(usage.MemoryPeakBytes);
        Assert.Null(usage.CpuUsageNanoseconds);
        Assert.Equal(4, cgroup.ReadResourceUsage().Unenforced.Length);
    }

    [Fact]
    public void Create_V2ControllerNotDelegated_NamesSubtreeControlFix()
    {
        string root = Directory.CreateTempSubdirectory("confine-cgroup-v2-").FullName;
        try
        {
            string own = Path.Join(root, "sys/fs/cgroup/user.slice/app.scope");
            Directory.CreateDirectory(own);
            File.WriteAllText(Path.Join(root, "sys/fs/cgroup/cgroup.controllers"), "cpu memory pids");
            File.WriteAllText(Path.Join(own, "cgroup.controllers"), "cpu");
            File.WriteAllText(Path.Join(own, "cgroup.subtree_control"), "");
            var host = new CgroupHost(
                "25 22 0:22 / /sys/fs/cgroup rw,relatime shared:4 - cgroup2 cgroup2 rw\n",
                "0::/user.slice/app.scope\n",
                root);

            CgroupUnavailableException error = Assert.Throws<CgroupUnavailableException>(
                () => SandboxCgroup.Create(host, new ResourceLimits { MemoryBytes = 64 * MiB }, "v2"));

            Assert.Equal("memory", error.Controller);
            string grandparent = Path.Join(root, "sys/fs/cgroup/user.slice");
            Assert.Contains($"add +memory to {grandparent}/cgroup.subtree_control", error.Fix);
            Assert.Empty(Directory.GetDirectories(own));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Theory]
    [InlineData("0-3,8,10-11", "0-3,8,10-11", 7)]
    [InlineData(" 2 ", "2", 1)]
    [InlineData("5,1,2,3", "1-3,5", 4)]
    [InlineData("", "", 0)]
    public void CpuListTryParse_KernelFormat_RoundTrips(string text, string normalised, int count)
    {
        Assert.True(CpuList.TryParse(text, out CpuList list));

        Assert.Equal(normalised, list.ToString());
        Assert.Equal(count, list.Count);
    }

    [Theory]
    [InlineData("a")]
    [InlineData("1,,2")]
    [InlineData("1-2-3")]
    [InlineData("-1")]
    public void CpuListTryParse_Malformed_ReturnsFalse(string text) => Assert.False(CpuList.TryParse(text, out _));

    [Fact]
    public void CgroupNameTryParse_OwnName_RoundTrips()
    {
        CgroupName name = CgroupName.ForThisProcess("run-7.a_b");

        Assert.True(CgroupName.TryParse(name.ToString(), out CgroupName parsed));
        Assert.Equal(name, parsed);
        Assert.Equal(Environment.ProcessId, parsed.OwnerPid);
        Assert.True(parsed.OwnerIsAlive());
        Assert.False((parsed with { OwnerStartTime = parsed.OwnerStartTime + 1 }).OwnerIsAlive());
    }

    [Theory]
    [InlineData("confine-")]
    [InlineData("confine-12-x-name")]
    [InlineData("confine-12-34")]
    [InlineData("confine-0-34-name")]
    [InlineData("other-12-34-name")]
    [InlineData("confine-12-34-na/me")]
    public void CgroupNameTryParse_Foreign_ReturnsFalse(string directory) =>
        Assert.False(CgroupName.TryParse(directory, out _));

    [Fact]
    public void CgroupNameParseStartTime_CommandWithParenthesesAndSpaces_ReadsField22()
    {
        const string stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";

        Assert.Equal(987654UL, CgroupName.ParseStartTime(stat));
    }

    [Fact]
    public void ToResourceUsage_Reading_MapsEveryField()
    {
        var reading = new CgroupUsage
        {
            Version = CgroupVersion.V2,
            OomKills = 2,
            PidsPeak = 17,
            IoReadBytes = 1,
            IoWriteBytes = 2,
            IoReadOps = 3,
            IoWriteOps = 4,
            CpuThrottledNanoseconds = 1_500_000_000,
        };

        ResourceUsage usage = reading.ToResourceUsage(["resources.pids_limit: no pids controller"]);

        Assert.Equal(2, usage.CgroupVersion);
        Assert.Equal(2, usage.OomKills);
        Assert.Equal(17, usage.PidsPeak);
        Assert.Equal((1L, 2L, 3L, 4L), (usage.IoReadBytes, usage.IoWriteBytes, usage.IoReadOps, usage.IoWriteOps));
        Assert.Equal(1.5, usage.CpuThrottledSeconds);
        Assert.Equal(["resources.pids_limit: no pids controller"], usage.Unenforced.ToArray());
        Assert.Null(new CgroupUsage().ToResourceUsage([]).CpuThrottledSeconds);
    }

    private static ResourceLimits Io(params DeviceIoLimit[] devices) => new() { DeviceIo = [.. devices] };

    [Fact]
    public void Create_BadName_ThrowsArgumentException() =>
        Assert.Throws<ArgumentException>(() => SandboxCgroup.Create(s_bareHost, ResourceLimits.None, "a/b"));
}
