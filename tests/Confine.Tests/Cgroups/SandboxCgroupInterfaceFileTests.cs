using System.Diagnostics;
using System.Globalization;
using Confine.Cgroups;
using Confine.Native;

namespace Confine.Tests.Cgroups;

/// <summary>
/// What lands in the kernel's interface files, per cgroup version. The v1 half runs on this kind
/// of machine; the v2 half runs where the v2 hierarchy has controllers (the QEMU harness) and is
/// skipped, with the reason, elsewhere.
/// </summary>
[Collection(CgroupCollection.Name)]
[Trait("Category", "Cgroup")]
public sealed class SandboxCgroupInterfaceFileTests
{
    private const long MiB = 1L << 20;

    private readonly CgroupTestHost _env;

    public SandboxCgroupInterfaceFileTests(CgroupTestHost env) => _env = env;

    [CgroupFact(CgroupNeed.V1)]
    [Trait("Requirement", "CgroupV1")]
    public void Create_V1MemoryLimitWithoutSwap_SetsMemswToTheMemoryLimit()
    {
        using SandboxCgroup cgroup = Create(new ResourceLimits { MemoryBytes = 64 * MiB });

        Assert.Equal(64 * MiB, ReadLong(cgroup, CgroupController.Memory, "memory.limit_in_bytes"));
        Assert.Equal(64 * MiB, ReadLong(cgroup, CgroupController.Memory, "memory.memsw.limit_in_bytes"));
    }

    [CgroupFact(CgroupNeed.V1)]
    [Trait("Requirement", "CgroupV1")]
    public void Create_V1MemorySwap_SetsMemswToTheTotalOrUnlimited()
    {
        using SandboxCgroup total = Create(new ResourceLimits { MemoryBytes = 64 * MiB, MemorySwapBytes = 96 * MiB });
        using SandboxCgroup unlimited = Create(new ResourceLimits { MemoryBytes = 64 * MiB, MemorySwapBytes = -1 });

        Assert.Equal(96 * MiB, ReadLong(total, CgroupController.Memory, "memory.memsw.limit_in_bytes"));
        Assert.True(ReadLong(unlimited, CgroupController.Memory, "memory.memsw.limit_in_bytes") > 1L << 60);
    }

    [CgroupFact(CgroupNeed.V1)]
    [Trait("Requirement", "CgroupV1")]
    public void Create_V1FractionalCpus_WritesQuotaAndPeriod()
    {
        using SandboxCgroup cgroup = Create(new ResourceLimits { Cpus = 1.5 });

        Assert.Equal(150_000, ReadLong(cgroup, CgroupController.Cpu, "cpu.cfs_quota_us"));
        Assert.Equal(100_000, ReadLong(cgroup, CgroupController.Cpu, "cpu.cfs_period_us"));
        Assert.NotNull(cgroup.DirectoryOf(CgroupController.CpuAccounting));
    }

    [CgroupFact(CgroupNeed.V1)]
    [Trait("Requirement", "CgroupV1")]
    public void Create_V1Cpuset_WritesCpusCopiesMemsAndTakesTasks()
    {
        using SandboxCgroup cgroup = Create(new ResourceLimits { CpusetCpus = "0" });
        string parent = _env.PrivateDirectory(CgroupController.Cpuset);
        using Workload workload = Workload.Start("exit 0");

        workload.JoinAndRelease(cgroup);

        Assert.Equal("0", Read(cgroup, CgroupController.Cpuset, "cpuset.cpus"));
        string parentMems = File.ReadAllText(Path.Join(parent, "cpuset.mems")).Trim();
        Assert.Equal(parentMems, Read(cgroup, CgroupController.Cpuset, "cpuset.mems"));
        Assert.True(workload.WaitForExit(5000));
    }

    [CgroupFact(CgroupNeed.V1)]
    [Trait("Requirement", "CgroupV1")]
    public void Create_V1Pids_WritesPidsMax()
    {
        using SandboxCgroup cgroup = Create(new ResourceLimits { PidsLimit = 37 });

        Assert.Equal(37, ReadLong(cgroup, CgroupController.Pids, "pids.max"));
    }

    [CgroupFact(CgroupNeed.V1, CgroupNeed.BlockDevice)]
    [Trait("Requirement", "CgroupV1")]
    public void Create_V1DeviceIo_WritesThrottleFiles()
    {
        BlockDevice device = CgroupTestEnvironment.BlockDeviceDirectory!.Value.Device;
        using SandboxCgroup cgroup = Create(new ResourceLimits
        {
            DeviceIo = [new DeviceIoLimit(device.ToString()) { ReadBps = 3 * MiB, WriteIops = 50 }],
        });

        Assert.Equal($"{device} {3 * MiB}", Read(cgroup, CgroupController.Io, "blkio.throttle.read_bps_device"));
        Assert.Equal($"{device} 50", Read(cgroup, CgroupController.Io, "blkio.throttle.write_iops_device"));
        Assert.Equal("", Read(cgroup, CgroupController.Io, "blkio.throttle.write_bps_device"));
    }

    [CgroupFact(CgroupNeed.V2)]
    [Trait("Requirement", "CgroupV2")]
    public void Create_V2Limits_EnablesControllersAndWritesInterfaceFiles()
    {
        using SandboxCgroup cgroup = Create(new ResourceLimits { MemoryBytes = 64 * MiB, Cpus = 0.5, PidsLimit = 20 });
        string directory = cgroup.DirectoryOf(CgroupController.Memory)!;
        string[] enabled = File.ReadAllText(Path.Join(Path.GetDirectoryName(directory), "cgroup.subtree_control"))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

        Assert.Single(cgroup.Directories);
        Assert.Subset(enabled.ToHashSet(), new HashSet<string> { "memory", "cpu", "pids" });
        Assert.Equal(64 * MiB, ReadLong(cgroup, CgroupController.Memory, "memory.max"));
        if (File.Exists(Path.Join(directory, "memory.swap.max")))
        {
            Assert.Equal(0, ReadLong(cgroup, CgroupController.Memory, "memory.swap.max"));
        }

        Assert.Equal("50000 100000", Read(cgroup, CgroupController.Cpu, "cpu.max"));
        Assert.Equal(20, ReadLong(cgroup, CgroupController.Pids, "pids.max"));
        Assert.Equal(CgroupVersion.V2, cgroup.VersionOf(CgroupController.Freezer));
    }

    [CgroupFact(CgroupNeed.V2)]
    [Trait("Requirement", "CgroupV2")]
    public void Create_V2MemorySwap_WritesSwapPartOnly()
    {
        using SandboxCgroup cgroup = Create(new ResourceLimits { MemoryBytes = 64 * MiB, MemorySwapBytes = 96 * MiB });
        using SandboxCgroup unlimited = Create(new ResourceLimits { MemoryBytes = 64 * MiB, MemorySwapBytes = -1 });
        string swapMax = Path.Join(cgroup.DirectoryOf(CgroupController.Memory), "memory.swap.max");

        if (File.Exists(swapMax))
        {
            Assert.Equal(32 * MiB, ReadLong(cgroup, CgroupController.Memory, "memory.swap.max"));
            Assert.Equal("max", Read(unlimited, CgroupController.Memory, "memory.swap.max"));
        }
        else
        {
            Assert.Contains(cgroup.Unenforced, u => u.StartsWith("resources.memory_swap", StringComparison.Ordinal));
        }
    }

    [CgroupFact(CgroupNeed.V2)]
    [Trait("Requirement", "CgroupV2")]
    public void Create_V2Cpuset_WritesCpus()
    {
        using SandboxCgroup cgroup = Create(new ResourceLimits { CpusetCpus = "0" });

        Assert.Equal("0", Read(cgroup, CgroupController.Cpuset, "cpuset.cpus"));
    }

    [CgroupFact(CgroupNeed.V2, CgroupNeed.BlockDevice)]
    [Trait("Requirement", "CgroupV2")]
    public void Create_V2DeviceIo_WritesIoMax()
    {
        BlockDevice device = CgroupTestEnvironment.BlockDeviceDirectory!.Value.Device;
        using SandboxCgroup cgroup = Create(new ResourceLimits
        {
            DeviceIo = [new DeviceIoLimit(device.ToString()) { WriteBps = 2 * MiB, ReadIops = 40 }],
        });

        Assert.Equal($"{device} rbps=max wbps={2 * MiB} riops=40 wiops=max",
            Read(cgroup, CgroupController.Io, "io.max"));
    }

    [CgroupFact(CgroupNeed.V2)]
    [Trait("Requirement", "CgroupV2")]
    public void ReadUsage_V2OomKill_ComesFromMemoryEvents()
    {
        using SandboxCgroup cgroup = Create(new ResourceLimits { MemoryBytes = 32 * MiB });
        using Workload hog = Workload.Start("head -c 100000000 /dev/zero | tail");

        hog.JoinAndRelease(cgroup);
        Assert.True(hog.WaitForExit(30_000));
        CgroupUsage usage = cgroup.ReadUsage();

        Assert.Equal(CgroupVersion.V2, usage.Version);
        string events = Path.Join(cgroup.DirectoryOf(CgroupController.Memory), "memory.events");
        Assert.Equal(CgroupFiles.TryReadKeyed(events, "oom_kill"), usage.OomKills);
        Assert.True(usage.OomKills >= 1);
        Assert.InRange(usage.MemoryPeakBytes!.Value, 16 * MiB, 33 * MiB);
    }

    [CgroupFact(CgroupNeed.V2)]
    [Trait("Requirement", "CgroupV2")]
    public void KillAll_V2ForkingTasks_EmptiesTheCgroup()
    {
        using SandboxCgroup cgroup = Create(new ResourceLimits { PidsLimit = 30 });
        using Workload forker = Workload.Start("while :; do sleep 30 & done");

        forker.JoinAndRelease(cgroup);
        var clock = Stopwatch.StartNew();
        while (cgroup.ReadPids().Count < 10 && clock.ElapsedMilliseconds < 5000)
        {
            Thread.Sleep(10);
        }

        Assert.True(cgroup.ReadPids().Count >= 10);
        cgroup.KillAll();

        Assert.True(cgroup.IsEmpty());
        string events = Path.Join(cgroup.DirectoryOf(CgroupController.Freezer), "cgroup.events");
        Assert.Equal(0, CgroupFiles.TryReadKeyed(events, "populated"));
        Assert.True(forker.WaitForExit(2000));
    }

    [CgroupFact(CgroupNeed.V2)]
    [Trait("Requirement", "CgroupV2")]
    public void Create_V2ParentWithProcesses_ThrowsCgroupUnavailable()
    {
        using SandboxCgroup enabler = Create(new ResourceLimits { MemoryBytes = 64 * MiB });
        string busy = Path.Join(_env.PrivateDirectory(CgroupController.Memory), "busy");
        Directory.CreateDirectory(busy);
        using Workload resident = Workload.Start("sleep 60");
        try
        {
            string pid = resident.Pid.ToString(CultureInfo.InvariantCulture);
            Assert.Equal(Interop.Error.None, CgroupFiles.Write(Path.Join(busy, "cgroup.procs"), pid));
            string parent = _env.Host[CgroupController.Memory].ParentPath + "/busy";

            CgroupUnavailableException error = Assert.Throws<CgroupUnavailableException>(() => Create(
                new ResourceLimits { MemoryBytes = 64 * MiB, CgroupParent = parent }));

            Assert.Equal("memory", error.Controller);
            Assert.Contains("holds processes", error.Reason);
        }
        finally
        {
            resident.Dispose();
            for (int i = 0; i < 100 && CgroupSyscalls.Rmdir(busy) == Interop.Error.EBUSY; i++)
            {
                Thread.Sleep(10);
            }
        }
    }

    private SandboxCgroup Create(ResourceLimits limits) =>
        SandboxCgroup.Create(_env.Host, limits, CgroupTestHost.UniqueName("files"));

    private static string Read(SandboxCgroup cgroup, CgroupController controller, string file) =>
        File.ReadAllText(Path.Join(cgroup.DirectoryOf(controller)!, file)).Trim();

    private static long ReadLong(SandboxCgroup cgroup, CgroupController controller, string file) =>
        long.Parse(Read(cgroup, controller, file), CultureInfo.InvariantCulture);
}
