using Confine.Cgroups;

namespace Confine.Tests.Cgroups;

/// <summary>
/// Detection on sample texts of the three layouts. The mount points are laid out as a fake tree in
/// a temporary directory, which the host reads through its root path.
/// </summary>
[Trait("Category", "Cgroup")]
public sealed class CgroupHostTests : IDisposable
{
    /// <summary>A systemd host on cgroup v2 only (Fedora, Debian 11+, Ubuntu 21.10+).</summary>
    private const string V2MountInfo = """
        22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
        25 22 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
        """;

    private const string V2ProcSelfCgroup = "0::/user.slice/user-1000.slice/session-3.scope\n";

    /// <summary>An older systemd host on cgroup v1 only, cpu and cpuacct mounted together (Ubuntu 18.04).</summary>
    private const string V1MountInfo = """
        24 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
        25 24 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
        28 24 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
        29 24 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
        30 24 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
        31 24 0:28 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,blkio
        32 24 0:29 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,freezer
        33 24 0:30 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,cpuset,clone_children
        34 24 0:31 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,net_cls,net_prio
        """;

    private const string V1ProcSelfCgroup = """
        11:net_cls,net_prio:/
        10:cpuset:/
        9:freezer:/user/1000.user/c2.session
        8:blkio:/user.slice
        7:pids:/user.slice/user-1000.slice/session-2.scope
        6:memory:/user.slice/user-1000.slice/session-2.scope
        4:cpu,cpuacct:/user.slice
        1:name=systemd:/user.slice/user-1000.slice/session-2.scope
        0::/user.slice/user-1000.slice/session-2.scope
        """;

    /// <summary>
    /// This kind of machine: each v1 controller in its own hierarchy (cpu apart from cpuacct), plus
    /// a cgroup2 mount at /sys/fs/cgroup/unified holding only hugetlb.
    /// </summary>
    private const string HybridMountInfo = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
        34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
        37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
        38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
        39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """;

    private const string HybridProcSelfCgroup = """
        9:name=systemd:/
        8:pids:/
        7:blkio:/
        6:freezer:/
        5:devices:/
        4:memory:/process_api/b8e12f13161882a75cfdc40bbe91137c
        3:cpuset:/
        2:cpuacct:/
        1:cpu:/
        0::/
        """;

    private readonly string _root = Directory.CreateTempSubdirectory("confine-cgroup-host-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void ControllerList_HasEveryControllerInDeclarationOrder()
    {
        Assert.Equal(Enum.GetValues<CgroupController>(), CgroupControllerNames.All);
    }

    [Fact]
    public void Constructor_PureV2_FindsUnifiedHierarchyAndOwnCgroup()
    {
        string own = Fake("sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope");
        Write("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc");
        Write("sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/cgroup.controllers", "cpu io memory pids");
        Write("sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/cgroup.subtree_control", "");
        Write("sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/cgroup.procs", "");

        var host = new CgroupHost(V2MountInfo, V2ProcSelfCgroup, _root);

        Assert.Equal(CgroupLayout.V2, host.Layout);
        CgroupHierarchy unified = Assert.Single(host.Hierarchies);
        Assert.Same(unified, host.Unified);
        Assert.Equal(Path.Join(_root, "sys/fs/cgroup"), unified.MountPoint);
        Assert.Equal(own, unified.OwnDirectory);
        Assert.Contains("memory", unified.Controllers);
        foreach (CgroupController controller in CgroupControllerNames.All)
        {
            Assert.Same(unified, host.HierarchyOf(controller));
            Assert.Equal(CgroupVersion.V2, host[controller].Version);
            Assert.Equal("/user.slice/user-1000.slice/session-3.scope", host[controller].ParentPath);
        }

        Assert.True(host[CgroupController.Memory].CanCreateChild);
        Assert.True(host[CgroupController.Memory].NeedsEnabling);
        Assert.True(host[CgroupController.Freezer].CanCreateChild);
        Assert.False(host[CgroupController.Freezer].NeedsEnabling);
        Assert.False(host[CgroupController.Cpuset].CanCreateChild);
        Assert.Contains("add +cpuset to", host[CgroupController.Cpuset].Fix);
        Assert.Contains("user-1000.slice/cgroup.subtree_control", host[CgroupController.Cpuset].Fix);
    }

    [Fact]
    public void Constructor_PureV2WithProcessesInOwnCgroup_CannotGiveControllers()
    {
        Fake("sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope");
        Write("sys/fs/cgroup/cgroup.controllers", "cpu io memory pids");
        Write("sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/cgroup.controllers", "cpu io memory pids");
        Write("sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/cgroup.subtree_control", "");
        Write("sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/cgroup.procs", "1234\n1240\n");

        var host = new CgroupHost(V2MountInfo, V2ProcSelfCgroup, _root);

        CgroupPlacement memory = host[CgroupController.Memory];
        Assert.False(memory.CanCreateChild);
        Assert.Contains("holds processes", memory.Problem);
        Assert.Contains("resources.cgroup_parent", memory.Fix);
        Assert.True(host[CgroupController.CpuAccounting].CanCreateChild);
    }

    [Fact]
    public void Constructor_PureV1WithCpuAndCpuacctTogether_SharesOneHierarchy()
    {
        Fake("sys/fs/cgroup/cpu,cpuacct/user.slice");
        Fake("sys/fs/cgroup/memory/user.slice/user-1000.slice/session-2.scope");

        var host = new CgroupHost(V1MountInfo, V1ProcSelfCgroup, _root);

        Assert.Equal(CgroupLayout.V1, host.Layout);
        Assert.Null(host.Unified);
        CgroupHierarchy cpu = host.HierarchyOf(CgroupController.Cpu)!;
        Assert.Same(cpu, host.HierarchyOf(CgroupController.CpuAccounting));
        Assert.Equal(Path.Join(_root, "sys/fs/cgroup/cpu,cpuacct"), cpu.MountPoint);
        Assert.Equal(["cpu", "cpuacct"], cpu.Controllers.Order());
        Assert.Equal("/user.slice", host[CgroupController.CpuAccounting].ParentPath);
        Assert.Equal("/user/1000.user/c2.session", host[CgroupController.Freezer].ParentPath);
        Assert.Equal("/user.slice/user-1000.slice/session-2.scope", host[CgroupController.Memory].ParentPath);
        Assert.Equal(CgroupVersion.V1, host[CgroupController.Io].Version);
        Assert.Equal("blkio", host[CgroupController.Io].Name);
        Assert.DoesNotContain(host.Hierarchies, h => h.Controllers.IsEmpty);
        Assert.True(host[CgroupController.Memory].CanCreateChild);
        Assert.True(host[CgroupController.Cpu].CanCreateChild);
        Assert.False(host[CgroupController.Pids].CanCreateChild);
        Assert.Contains("does not exist", host[CgroupController.Pids].Problem);
    }

    [Fact]
    public void Constructor_Hybrid_TakesControllersFromV1AndKeepsEmptyUnified()
    {
        Fake("sys/fs/cgroup/memory/process_api/b8e12f13161882a75cfdc40bbe91137c");
        Fake("sys/fs/cgroup/cpuacct");
        Write("sys/fs/cgroup/unified/cgroup.controllers", "hugetlb");

        var host = new CgroupHost(HybridMountInfo, HybridProcSelfCgroup, _root);

        Assert.Equal(CgroupLayout.Hybrid, host.Layout);
        Assert.NotNull(host.Unified);
        Assert.Equal(["hugetlb"], host.Unified.Controllers.ToArray());
        foreach (CgroupController controller in CgroupControllerNames.All)
        {
            Assert.Equal(CgroupVersion.V1, host[controller].Version);
        }

        Assert.NotSame(host.HierarchyOf(CgroupController.Cpu), host.HierarchyOf(CgroupController.CpuAccounting));
        Assert.Equal(Path.Join(_root, "sys/fs/cgroup/cpuacct"), host[CgroupController.CpuAccounting].ParentDirectory);
        Assert.Equal(
            Path.Join(_root, "sys/fs/cgroup/memory/process_api/b8e12f13161882a75cfdc40bbe91137c"),
            host[CgroupController.Memory].ParentDirectory);
        Assert.True(host[CgroupController.Memory].CanCreateChild);
    }

    [Fact]
    public void Constructor_HybridWithoutV1Freezer_FreezesThroughUnified()
    {
        string mountInfo = string.Join('\n', HybridMountInfo.Split('\n').Where(l => !l.Contains("freezer")));
        Write("sys/fs/cgroup/unified/cgroup.controllers", "");

        var host = new CgroupHost(mountInfo, HybridProcSelfCgroup, _root);

        Assert.Same(host.Unified, host.HierarchyOf(CgroupController.Freezer));
        Assert.Equal("cgroup.freeze", host[CgroupController.Freezer].Name);
        Assert.Equal(CgroupVersion.V1, host[CgroupController.Memory].Version);
    }

    [Fact]
    public void Constructor_ReadOnlyMount_CannotCreateChild()
    {
        Fake("sys/fs/cgroup/memory/user.slice/user-1000.slice/session-2.scope");
        string mountInfo = V1MountInfo.Replace(
            "/sys/fs/cgroup/memory rw,nosuid", "/sys/fs/cgroup/memory ro,nosuid", StringComparison.Ordinal);

        var host = new CgroupHost(mountInfo, V1ProcSelfCgroup, _root);

        Assert.True(host.HierarchyOf(CgroupController.Memory)!.ReadOnly);
        Assert.False(host[CgroupController.Memory].CanCreateChild);
        Assert.Contains("read-write", host[CgroupController.Memory].Fix);
    }

    [Fact]
    public void Constructor_BindMountedSubtreeWithEscapes_MapsOwnPathBeneathMountRoot()
    {
        const string mountInfo =
            "40 31 0:32 /docker/abc /sys/fs/cgroup/my\\040memory rw,relatime - cgroup cgroup rw,memory\n";

        var inside = new CgroupHost(mountInfo, "4:memory:/docker/abc/job\n", _root);
        var outside = new CgroupHost(mountInfo, "4:memory:/system.slice\n", _root);

        Assert.Equal(
            Path.Join(_root, "sys/fs/cgroup/my memory"), inside.HierarchyOf(CgroupController.Memory)!.MountPoint);
        Assert.Equal(Path.Join(_root, "sys/fs/cgroup/my memory/job"), inside[CgroupController.Memory].ParentDirectory);
        Assert.Null(outside.HierarchyOf(CgroupController.Memory)!.OwnDirectory);
        Assert.Contains("lies outside", outside[CgroupController.Memory].Problem);
    }

    [Fact]
    public void Constructor_NoCgroupMounts_ReportsEveryControllerMissing()
    {
        var host = new CgroupHost("22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n", "", _root);

        Assert.Equal(CgroupLayout.None, host.Layout);
        Assert.All(CgroupControllerNames.All, c => Assert.Null(host[c].Hierarchy));
        Assert.Contains("no mounted cgroup hierarchy", host[CgroupController.Memory].Problem);
    }

    [Fact]
    public void ParseProcSelfCgroup_PathWithColon_KeepsWholePath()
    {
        (Dictionary<string, string> v1, string? v2) = CgroupHost.ParseProcSelfCgroup("4:memory:/a:b\n0::/c:d\n");

        Assert.Equal("/a:b", v1["memory"]);
        Assert.Equal("/c:d", v2);
    }

    [CgroupFact]
    public void Detect_OnThisHost_FindsOwnCgroupOfEveryController()
    {
        CgroupHost host = CgroupHost.Detect();
        (Dictionary<string, string> v1, string? v2) =
            CgroupHost.ParseProcSelfCgroup(File.ReadAllText("/proc/self/cgroup"));

        int checkedControllers = 0;
        foreach (CgroupController controller in CgroupControllerNames.All)
        {
            CgroupPlacement placement = host[controller];
            if (placement.Hierarchy is null)
            {
                continue;
            }

            string expected = placement.Version == CgroupVersion.V1
                ? v1[CgroupControllerNames.V1Name(controller)]
                : v2!;
            Assert.Equal(expected, placement.ParentPath);
            Assert.True(Directory.Exists(placement.ParentDirectory), placement.ParentDirectory);
            checkedControllers++;
        }

        Assert.True(checkedControllers > 0);
    }

    private string Fake(string relative)
    {
        string path = Path.Join(_root, relative);
        Directory.CreateDirectory(path);
        return path;
    }

    private void Write(string relative, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.Join(_root, relative))!);
        File.WriteAllText(Path.Join(_root, relative), text);
    }
}
