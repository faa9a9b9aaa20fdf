namespace Confine.Cgroups;

/// <summary>
/// The resources Confine controls or accounts through cgroups. Each maps to a v1 controller; on
/// cgroup v2 <see cref="CpuAccounting"/> and <see cref="Freezer"/> are part of the core
/// (<c>cpu.stat</c>, <c>cgroup.freeze</c>, <c>cgroup.kill</c>) and need no controller.
/// </summary>
internal enum CgroupController
{
    /// <summary><c>memory</c>: limits, usage, peak, OOM kills.</summary>
    Memory,

    /// <summary><c>cpu</c>: CFS bandwidth (<c>--cpus</c>) and throttling statistics.</summary>
    Cpu,

    /// <summary><c>cpuacct</c> on v1, the core <c>cpu.stat</c> on v2: CPU time used.</summary>
    CpuAccounting,

    /// <summary><c>cpuset</c>: which CPUs the sandbox may run on.</summary>
    Cpuset,

    /// <summary><c>pids</c>: how many tasks may exist at once.</summary>
    Pids,

    /// <summary><c>blkio</c> on v1, <c>io</c> on v2: block device throttling and statistics.</summary>
    Io,

    /// <summary>
    /// <c>freezer</c> on v1, the core <c>cgroup.freeze</c> on v2: stopping every task at once to kill
    /// them.
    /// </summary>
    Freezer,
}

/// <summary>The two cgroup interfaces of the kernel.</summary>
internal enum CgroupVersion
{
    /// <summary>One hierarchy per controller (or per group of co-mounted controllers).</summary>
    V1 = 1,

    /// <summary>The unified hierarchy.</summary>
    V2 = 2,
}

/// <summary>How the host's cgroups are mounted.</summary>
internal enum CgroupLayout
{
    /// <summary>No cgroup filesystem is mounted where Confine can see it.</summary>
    None,

    /// <summary>Only cgroup v1 hierarchies.</summary>
    V1,

    /// <summary>Only the cgroup v2 unified hierarchy.</summary>
    V2,

    /// <summary>
    /// cgroup v1 hierarchies for the controllers plus a cgroup v2 mount (usually
    /// <c>/sys/fs/cgroup/unified</c>) that holds few or no controllers.
    /// </summary>
    Hybrid,
}

/// <summary>The kernel's names of <see cref="CgroupController"/>s.</summary>
internal static class CgroupControllerNames
{
    /// <summary>Every controller, in declaration order.</summary>
    /// <remarks>
    /// Written out rather than Enum.GetValues, which under NativeAOT reads the enum's metadata
    /// through reflection, on every command-line run that makes a cgroup. A test checks that the two
    /// agree.
    /// </remarks>
    public static readonly CgroupController[] All =
    [
        CgroupController.Memory,
        CgroupController.Cpu,
        CgroupController.CpuAccounting,
        CgroupController.Cpuset,
        CgroupController.Pids,
        CgroupController.Io,
        CgroupController.Freezer,
    ];

    /// <summary>The controller's name in a v1 mount's options and in <c>/proc/self/cgroup</c>.</summary>
    public static string V1Name(CgroupController controller) => controller switch
    {
        CgroupController.Memory => "memory",
        CgroupController.Cpu => "cpu",
        CgroupController.CpuAccounting => "cpuacct",
        CgroupController.Cpuset => "cpuset",
        CgroupController.Pids => "pids",
        CgroupController.Io => "blkio",
        CgroupController.Freezer => "freezer",
        _ => throw new ArgumentOutOfRangeException(nameof(controller)),
    };

    /// <summary>
    /// The controller's name in v2's <c>cgroup.controllers</c>, or null for the two that the v2
    /// core provides without a controller.
    /// </summary>
    public static string? V2Name(CgroupController controller) => controller switch
    {
        CgroupController.Memory => "memory",
        CgroupController.Cpu => "cpu",
        CgroupController.Cpuset => "cpuset",
        CgroupController.Pids => "pids",
        CgroupController.Io => "io",
        CgroupController.CpuAccounting or CgroupController.Freezer => null,
        _ => throw new ArgumentOutOfRangeException(nameof(controller)),
    };

    /// <summary>The name to show a person for the controller on a hierarchy of <paramref name="version"/>.</summary>
    public static string DisplayName(CgroupController controller, CgroupVersion version) =>
        version == CgroupVersion.V2
            ? V2Name(controller) ?? (controller == CgroupController.Freezer ? "cgroup.freeze" : "cpu.stat")
            : V1Name(controller);
}
