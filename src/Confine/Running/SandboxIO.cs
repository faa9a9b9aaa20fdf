namespace Confine;

/// <summary>Where a sandbox's standard streams come from and go to.</summary>
public sealed record SandboxIO
{
    /// <summary>No input; both output streams captured into the verdict.</summary>
    public static SandboxIO Capture { get; } = new();

    /// <summary>The command's standard input.</summary>
    public StdinSource Stdin { get; init; } = StdinSource.None;

    /// <summary>
    /// Where standard output goes as it arrives; null captures it into <see cref="Verdict.Stdout"/>.
    /// Writes happen on Confine's I/O thread, so the stream should not block for long.
    /// </summary>
    public Stream? Stdout { get; init; }

    /// <summary>Where standard error goes as it arrives; null captures it into <see cref="Verdict.Stderr"/>.</summary>
    public Stream? Stderr { get; init; }

    /// <summary>
    /// Called every <see cref="UsageInterval"/> with the sandbox's usage while its command runs. Asking
    /// for samples gives the run a cgroup even when the policy sets no limit.
    /// </summary>
    public Action<UsageSample>? OnUsage { get; init; }

    /// <summary>How often <see cref="OnUsage"/> is called; one second by default.</summary>
    public TimeSpan UsageInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Called for the first refused call of each kind (the same call with the same telling argument)
    /// as it happens, one call at a time and in order, on a thread started for it, so a handler that
    /// blocks delays only its own run's verdict; repeats are only counted, in
    /// <see cref="Verdict.Violations"/> at the end, which lists at most 256 kinds. Every call has
    /// returned before the run's verdict is.
    /// </summary>
    public Action<Violation>? OnViolation { get; init; }

    /// <summary>Where Confine logs what happens to the sandbox (violations, with stable event ids); null logs nothing.</summary>
    public Microsoft.Extensions.Logging.ILogger? Logger { get; init; }

    /// <summary>
    /// Called on the run's thread once the helper has started building the sandbox, before the run
    /// makes anything else (its cgroup). The confine command registers its signal handlers here:
    /// the first registration starts the runtime's signal thread, and started here that overlaps
    /// the sandbox's setup instead of delaying it. A signal that comes earlier ends Confine with its
    /// default action; the helper then kills the sandbox, and nothing else exists yet.
    /// </summary>
    internal Action? OnSandboxStarting { get; init; }
}

/// <summary>
/// A sandbox's standard input. Whatever the source, the command reads a pipe: handing it a host
/// file's descriptor would let it reopen that file through <c>/proc/self/fd/0</c>.
/// </summary>
public abstract record StdinSource
{
    private StdinSource()
    {
    }

    /// <summary>Immediate end-of-file.</summary>
    public static StdinSource None { get; } = new Bytes(ReadOnlyMemory<byte>.Empty);

    /// <summary>The contents of a host file, read by Confine.</summary>
    public static StdinSource FromFile(string path) => new HostFile(path);

    /// <summary>These bytes, then end-of-file.</summary>
    public static StdinSource FromBytes(ReadOnlyMemory<byte> data) => new Bytes(data);

    /// <summary>Everything the stream yields, then end-of-file.</summary>
    public static StdinSource FromStream(Stream stream) => new StreamSource(stream);

    /// <summary>A host file.</summary>
    public sealed record HostFile(string Path) : StdinSource;

    /// <summary>A fixed buffer.</summary>
    public sealed record Bytes(ReadOnlyMemory<byte> Data) : StdinSource;

    /// <summary>A caller's stream.</summary>
    public sealed record StreamSource(Stream Stream) : StdinSource;
}
