using System.Collections.Immutable;

namespace Confine;

/// <summary>
/// Limits enforced through cgroups. Every member is optional; <see cref="None"/> sets nothing and
/// needs no cgroup at all.
/// </summary>
public sealed record ResourceLimits
{
    /// <summary>No cgroup limits.</summary>
    public static ResourceLimits None { get; } = new();

    /// <summary>Hard memory limit in bytes (Docker's <c>--memory</c>); the sandbox is OOM-killed past it.</summary>
    public long? MemoryBytes { get; init; }

    /// <summary>
    /// Memory plus swap in bytes (Docker's <c>--memory-swap</c>). Null with a memory limit means no swap
    /// at all; -1 means unlimited swap.
    /// </summary>
    public long? MemorySwapBytes { get; init; }

    /// <summary>CPU bandwidth in cores, fractional (Docker's <c>--cpus</c>).</summary>
    public double? Cpus { get; init; }

    /// <summary>CPUs the sandbox may run on, in the kernel's list format (<c>0-1,3</c>).</summary>
    public string? CpusetCpus { get; init; }

    /// <summary>Total CPU time of the whole sandbox; past it the run ends as <c>cpu_time_limit</c>.</summary>
    public TimeSpan? CpuTime { get; init; }

    /// <summary>Most tasks (processes and threads) alive at once (Docker's <c>--pids-limit</c>).</summary>
    public int? PidsLimit { get; init; }

    /// <summary>Per-device bandwidth and IOPS limits.</summary>
    public ImmutableArray<DeviceIoLimit> DeviceIo { get; init; } = [];

    /// <summary>
    /// Run even when the host cannot give a controller these limits need; the verdict then lists
    /// what was not enforced.
    /// </summary>
    public bool AllowUnenforced { get; init; }

    /// <summary>Where the sandbox's cgroup is created; null puts it beneath Confine's own cgroup.</summary>
    public string? CgroupParent { get; init; }

    /// <summary>Whether any member asks for a cgroup.</summary>
    public bool NeedsCgroup =>
        MemoryBytes is not null || MemorySwapBytes is not null || Cpus is not null || CpusetCpus is not null
        || CpuTime is not null || PidsLimit is not null || !DeviceIo.IsDefaultOrEmpty;
}

/// <summary>
/// An I/O limit for one block device, named by its path or <c>MAJOR:MINOR</c>, or for every disk that
/// backs the sandbox's writable binds, named <see cref="Writable"/>.
/// </summary>
public sealed record DeviceIoLimit(string Device)
{
    /// <summary>
    /// The device name that stands for each disk behind a writable bind, resolved when the run starts.
    /// A limit that names a disk explicitly takes precedence over it for that disk; binds on tmpfs,
    /// overlay or network filesystems have no disk and are not throttled.
    /// </summary>
    public const string Writable = "writable";

    /// <summary>Read bytes per second.</summary>
    public long? ReadBps { get; init; }

    /// <summary>Write bytes per second.</summary>
    public long? WriteBps { get; init; }

    /// <summary>Read operations per second.</summary>
    public long? ReadIops { get; init; }

    /// <summary>Write operations per second.</summary>
    public long? WriteIops { get; init; }
}
