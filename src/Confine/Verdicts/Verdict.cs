using System.Collections.Immutable;
using System.Text.Json.Serialization;

namespace Confine;

/// <summary>
/// The structured record of one run: how it ended, what it used, what tripped. Serialised as the
/// JSON document described in <c>docs/verdict.md</c>; <see cref="Version"/> changes whenever a key
/// changes meaning or goes away.
/// </summary>
public sealed record Verdict
{
    /// <summary>The current version of the record's layout.</summary>
    public const int CurrentVersion = 1;

    /// <summary>Layout version of this record.</summary>
    [JsonPropertyName("version")]
    public int Version { get; init; } = CurrentVersion;

    /// <summary>How the run ended.</summary>
    [JsonPropertyName("status")]
    public required VerdictStatus Status { get; init; }

    /// <summary>The command's exit code, when it exited by itself.</summary>
    [JsonPropertyName("exit_code")]
    public int? ExitCode { get; init; }

    /// <summary>The signal number that ended the command, when one did.</summary>
    [JsonPropertyName("signal")]
    public int? Signal { get; init; }

    /// <summary>The signal's name (<c>SIGKILL</c>), when one ended the command.</summary>
    [JsonPropertyName("signal_name")]
    public string? SignalName { get; init; }

    /// <summary>The limit that stopped the run (<c>timeout</c>, <c>stdout</c>, <c>memory</c>, ...), if any.</summary>
    [JsonPropertyName("limit")]
    public LimitHit? Limit { get; init; }

    /// <summary>Standard output as captured, or only its counts when it was streamed.</summary>
    [JsonPropertyName("stdout")]
    public CapturedOutput Stdout { get; init; } = CapturedOutput.Empty;

    /// <summary>Standard error as captured, or only its counts when it was streamed.</summary>
    [JsonPropertyName("stderr")]
    public CapturedOutput Stderr { get; init; } = CapturedOutput.Empty;

    /// <summary>Seconds from the command's <c>execve</c> to its end.</summary>
    [JsonPropertyName("wall_time_s")]
    public double WallTimeSeconds { get; init; }

    /// <summary>CPU seconds of the whole sandbox, user plus system.</summary>
    [JsonPropertyName("cpu_time_s")]
    public double CpuTimeSeconds => CpuUserSeconds + CpuSystemSeconds;

    /// <summary>User-mode CPU seconds.</summary>
    [JsonPropertyName("cpu_user_s")]
    public double CpuUserSeconds { get; init; }

    /// <summary>Kernel-mode CPU seconds.</summary>
    [JsonPropertyName("cpu_system_s")]
    public double CpuSystemSeconds { get; init; }

    /// <summary>
    /// Peak memory in bytes: the cgroup's peak when the run had a memory cgroup, otherwise the
    /// largest resident set of any one process of the sandbox.
    /// </summary>
    [JsonPropertyName("memory_peak_bytes")]
    public long MemoryPeakBytes { get; init; }

    /// <summary>Where <see cref="MemoryPeakBytes"/> came from: <c>cgroup</c> or <c>max_rss</c>.</summary>
    [JsonPropertyName("memory_peak_source")]
    public string MemoryPeakSource { get; init; } = "max_rss";

    /// <summary>Seconds from the start of the run to the command's <c>execve</c>.</summary>
    [JsonPropertyName("setup_time_s")]
    public double SetupTimeSeconds { get; init; }

    /// <summary>
    /// Whether the sandbox was built ahead of the call, for an earlier run of the same policy; its
    /// setup time then covers only what was left to do.
    /// </summary>
    [JsonPropertyName("prepared_ahead")]
    public bool PreparedAhead { get; init; }

    /// <summary>What failed, when <see cref="Status"/> is <see cref="VerdictStatus.SetupFailed"/>.</summary>
    [JsonPropertyName("error")]
    public SetupError? Error { get; init; }

    /// <summary>Resource accounting from the sandbox's cgroup, when it had one.</summary>
    [JsonPropertyName("resources")]
    public ResourceUsage? Resources { get; init; }

    /// <summary>Refused calls and other escape attempts that were caught.</summary>
    [JsonPropertyName("violations")]
    public ImmutableArray<Violation> Violations { get; init; } = [];

    /// <summary>Protections the policy asked for that this host could not give, when degrading was allowed.</summary>
    [JsonPropertyName("weakened")]
    public ImmutableArray<string> Weakened { get; init; } = [];
}

/// <summary>How a run ended. Serialised in snake case (<c>exit_nonzero</c>).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<VerdictStatus>))]
public enum VerdictStatus
{
    /// <summary>The command exited with code 0.</summary>
    [JsonStringEnumMemberName("ok")] Ok,
    /// <summary>The command exited with another code.</summary>
    [JsonStringEnumMemberName("exit_nonzero")] ExitNonzero,
    /// <summary>A signal ended the command (not one of Confine's limits).</summary>
    [JsonStringEnumMemberName("signaled")] Signaled,
    /// <summary>The wall-clock limit passed.</summary>
    [JsonStringEnumMemberName("timeout")] Timeout,
    /// <summary>An output stream passed its limit.</summary>
    [JsonStringEnumMemberName("output_limit")] OutputLimit,
    /// <summary>The memory limit was hit and the kernel killed a process of the sandbox.</summary>
    [JsonStringEnumMemberName("memory_limit")] MemoryLimit,
    /// <summary>The sandbox's CPU time passed its limit.</summary>
    [JsonStringEnumMemberName("cpu_time_limit")] CpuTimeLimit,
    /// <summary>A refused call ended the run, as the policy asked.</summary>
    [JsonStringEnumMemberName("violation")] Violation,
    /// <summary>The caller cancelled the run.</summary>
    [JsonStringEnumMemberName("cancelled")] Cancelled,
    /// <summary>The sandbox could not be set up, or the command could not be executed in it.</summary>
    [JsonStringEnumMemberName("setup_failed")] SetupFailed,
}

/// <summary>A limit that stopped the run, with its configured value.</summary>
public sealed record LimitHit(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("value")] string Value);

/// <summary>One output stream of the command.</summary>
public sealed record CapturedOutput
{
    /// <summary>No output.</summary>
    public static CapturedOutput Empty { get; } = new();

    /// <summary>The captured bytes as UTF-8 text (invalid sequences replaced); null when streamed.</summary>
    [JsonPropertyName("text")]
    public string? Text { get; init; }

    /// <summary>Bytes the command wrote, counted up to where Confine stopped reading.</summary>
    [JsonPropertyName("bytes")]
    public long Bytes { get; init; }

    /// <summary>Whether the command wrote more than its limit allowed.</summary>
    [JsonPropertyName("truncated")]
    public bool Truncated { get; init; }
}

/// <summary>Why a sandbox could not be set up: the failing step, its errno and what it acted on.</summary>
public sealed record SetupError
{
    /// <summary>The step's name (<c>mount</c>, <c>pivot_root</c>, <c>exec</c>, ...).</summary>
    [JsonPropertyName("step")]
    public required string Step { get; init; }

    /// <summary>The errno the failing call returned, if a call failed.</summary>
    [JsonPropertyName("errno")]
    public int? Errno { get; init; }

    /// <summary>The errno's symbolic name (<c>ENOENT</c>).</summary>
    [JsonPropertyName("errno_name")]
    public string? ErrnoName { get; init; }

    /// <summary>What the step acted on: a path, a file name.</summary>
    [JsonPropertyName("detail")]
    public string? Detail { get; init; }

    /// <summary>One line for a person: what failed, where, and the likely fix.</summary>
    [JsonPropertyName("message")]
    public required string Message { get; init; }
}

/// <summary>Accounting read from the sandbox's cgroup at the end of the run.</summary>
public sealed record ResourceUsage
{
    /// <summary>cgroup version the numbers came from: <c>1</c> or <c>2</c>.</summary>
    [JsonPropertyName("cgroup_version")]
    public int CgroupVersion { get; init; }

    /// <summary>Times the kernel's OOM killer ended a process of the sandbox.</summary>
    [JsonPropertyName("oom_kills")]
    public long OomKills { get; init; }

    /// <summary>Most tasks alive at once.</summary>
    [JsonPropertyName("pids_peak")]
    public long? PidsPeak { get; init; }

    /// <summary>Bytes read from block devices.</summary>
    [JsonPropertyName("io_read_bytes")]
    public long? IoReadBytes { get; init; }

    /// <summary>Bytes written to block devices.</summary>
    [JsonPropertyName("io_write_bytes")]
    public long? IoWriteBytes { get; init; }

    /// <summary>Read operations on block devices.</summary>
    [JsonPropertyName("io_read_ops")]
    public long? IoReadOps { get; init; }

    /// <summary>Write operations on block devices.</summary>
    [JsonPropertyName("io_write_ops")]
    public long? IoWriteOps { get; init; }

    /// <summary>Seconds the sandbox was held back by its CPU quota.</summary>
    [JsonPropertyName("cpu_throttled_s")]
    public double? CpuThrottledSeconds { get; init; }

    /// <summary>Limits the policy asked for that the host could not enforce (allowed by the policy).</summary>
    [JsonPropertyName("unenforced")]
    public ImmutableArray<string> Unenforced { get; init; } = [];
}

/// <summary>A refused call or other escape attempt seen during the run.</summary>
public sealed record Violation
{
    /// <summary>What was attempted: a syscall's name, or a named escape signal.</summary>
    [JsonPropertyName("syscall")]
    public required string Syscall { get; init; }

    /// <summary>The argument that made the call dangerous, rendered for a person (<c>CLONE_NEWUSER</c>).</summary>
    [JsonPropertyName("argument")]
    public string? Argument { get; init; }

    /// <summary>Process id inside the sandbox that made the attempt (the first one seen).</summary>
    [JsonPropertyName("pid")]
    public int Pid { get; init; }

    /// <summary>How many times it was attempted.</summary>
    [JsonPropertyName("count")]
    public int Count { get; init; } = 1;

    /// <summary>What Confine did: <c>errno</c>, <c>kill</c>.</summary>
    [JsonPropertyName("action")]
    public string Action { get; init; } = "errno";
}
