namespace Confine.Cgroups;

/// <summary>
/// One reading of a sandbox's cgroup accounting. A member is null when the host did not give the
/// sandbox the controller that counts it, so that "not measured" never reads as zero.
/// </summary>
internal sealed record CgroupUsage
{
    /// <summary>The cgroup version the memory numbers came from (else the CPU numbers').</summary>
    public CgroupVersion Version { get; init; }

    /// <summary>CPU time of every task of the sandbox, user plus system, in nanoseconds.</summary>
    public long? CpuUsageNanoseconds { get; init; }

    /// <summary>User-mode CPU time in nanoseconds.</summary>
    public long? CpuUserNanoseconds { get; init; }

    /// <summary>Kernel-mode CPU time in nanoseconds.</summary>
    public long? CpuSystemNanoseconds { get; init; }

    /// <summary>Time the sandbox was held back by its CPU quota, in nanoseconds (needs a <c>cpu</c> cgroup).</summary>
    public long? CpuThrottledNanoseconds { get; init; }

    /// <summary>Memory charged to the sandbox now, in bytes.</summary>
    public long? MemoryCurrentBytes { get; init; }

    /// <summary>The most memory charged to the sandbox at once, in bytes.</summary>
    public long? MemoryPeakBytes { get; init; }

    /// <summary>
    /// Whether <see cref="MemoryPeakBytes"/> is the largest of Confine's own samples of current usage
    /// (a kernel without <c>memory.peak</c>), which can miss a short spike between samples.
    /// </summary>
    public bool MemoryPeakSampled { get; init; }

    /// <summary>Processes of the sandbox the kernel's OOM killer ended.</summary>
    public long OomKills { get; init; }

    /// <summary>Tasks (processes and threads) alive now.</summary>
    public long? PidsCurrent { get; init; }

    /// <summary>The most tasks alive at once (sampled by Confine when the kernel has no <c>pids.peak</c>).</summary>
    public long? PidsPeak { get; init; }

    /// <summary>Forks and clones the pids limit refused (<c>pids.events</c> <c>max</c>).</summary>
    public long? PidsLimitHits { get; init; }

    /// <summary>Bytes read from block devices.</summary>
    public long? IoReadBytes { get; init; }

    /// <summary>Bytes written to block devices.</summary>
    public long? IoWriteBytes { get; init; }

    /// <summary>Read operations on block devices.</summary>
    public long? IoReadOps { get; init; }

    /// <summary>Write operations on block devices.</summary>
    public long? IoWriteOps { get; init; }

    /// <summary>The reading as the verdict's <see cref="ResourceUsage"/>.</summary>
    /// <param name="unenforced">The limits that could not be enforced (<see cref="SandboxCgroup.Unenforced"/>).</param>
    public ResourceUsage ToResourceUsage(IEnumerable<string> unenforced) => new()
    {
        CgroupVersion = (int)Version,
        OomKills = OomKills,
        PidsPeak = PidsPeak,
        IoReadBytes = IoReadBytes,
        IoWriteBytes = IoWriteBytes,
        IoReadOps = IoReadOps,
        IoWriteOps = IoWriteOps,
        CpuThrottledSeconds = CpuThrottledNanoseconds / 1e9,
        Unenforced = [.. unenforced],
    };
}
