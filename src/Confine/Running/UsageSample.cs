using System.Text.Json.Serialization;
using Confine.Cgroups;

namespace Confine;

/// <summary>One sample of a running sandbox's usage, read from its cgroup.</summary>
public sealed record UsageSample
{
    /// <summary>Seconds since the run started.</summary>
    [JsonPropertyName("elapsed_s")]
    public double ElapsedSeconds { get; init; }

    /// <summary>CPU seconds used so far, user plus system.</summary>
    [JsonPropertyName("cpu_s")]
    public double CpuSeconds { get; init; }

    /// <summary>Memory in use now, in bytes.</summary>
    [JsonPropertyName("memory_bytes")]
    public long? MemoryBytes { get; init; }

    /// <summary>Peak memory so far, in bytes.</summary>
    [JsonPropertyName("memory_peak_bytes")]
    public long? MemoryPeakBytes { get; init; }

    /// <summary>Tasks alive now.</summary>
    [JsonPropertyName("pids")]
    public long? Pids { get; init; }

    /// <summary>Bytes read from block devices so far.</summary>
    [JsonPropertyName("io_read_bytes")]
    public long? IoReadBytes { get; init; }

    /// <summary>Bytes written to block devices so far.</summary>
    [JsonPropertyName("io_write_bytes")]
    public long? IoWriteBytes { get; init; }

    internal static UsageSample From(TimeSpan elapsed, CgroupUsage usage) => new()
    {
        ElapsedSeconds = elapsed.TotalSeconds,
        CpuSeconds = (usage.CpuUsageNanoseconds ?? 0) / 1e9,
        MemoryBytes = usage.MemoryCurrentBytes,
        MemoryPeakBytes = usage.MemoryPeakBytes,
        Pids = usage.PidsCurrent,
        IoReadBytes = usage.IoReadBytes,
        IoWriteBytes = usage.IoWriteBytes,
    };
}
