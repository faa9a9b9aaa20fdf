using System.Collections.Immutable;

namespace Confine;

/// <summary>
/// A preset of every policy knob, from the strictest to the most relaxed. A level is a starting
/// point: a policy file and the command line refine it key by key (docs/levels.md).
/// </summary>
public enum IsolationLevel
{
    /// <summary>
    /// For code nobody has looked at: only the system's programs and libraries are visible, no network
    /// beyond the sandbox's own loopback, tight limits, the strict seccomp profile that kills on a
    /// violation, and Landlock under the mount namespace.
    /// </summary>
    Maximum,

    /// <summary>
    /// The command line's default: the system's directories read-only, a writable <c>/tmp</c>, only the
    /// sandbox's own loopback, moderate limits, the default seccomp profile that records violations.
    /// </summary>
    Balanced,

    /// <summary>
    /// For a developer's own tools: more of the host's directories read-only, the host's network,
    /// generous limits, the permissive seccomp profile, and a run that goes on when the host cannot
    /// give every protection. Ids are still mapped: the sandbox's root is never the host's.
    /// </summary>
    Development,
}

/// <summary>The policy of each <see cref="IsolationLevel"/>, as data that docs/levels.md is checked against.</summary>
public static class IsolationLevels
{
    /// <summary>The level the command line uses when none is asked for.</summary>
    public const IsolationLevel Default = IsolationLevel.Balanced;

    // Declared before the policies that read them: static initialisers run in textual order.
    private static readonly ImmutableArray<string> s_systemBase = ["/usr", "/bin", "/sbin", "/lib", "/lib64"];

    /// <summary>
    /// Under <see cref="IsolationLevel.Maximum"/> the only files of /etc are the dynamic loader's cache,
    /// which every dynamically linked program reads first (without it the loader walks its default
    /// directories, slower and, on multiarch systems, missing libraries), and the alternatives links
    /// that Debian's <c>awk</c>, <c>editor</c> and friends resolve through. Neither holds anything about
    /// the host's users, names or network; /etc/passwd, /etc/hosts and /etc/resolv.conf do, and stay out.
    /// </summary>
    private static readonly ImmutableArray<string> s_maximumEtc = ["/etc/ld.so.cache", "/etc/alternatives"];

    private static readonly SandboxPolicy s_maximum = SandboxPolicy.Default with
    {
        Network = NetworkMode.None,
        SystemPaths = [.. s_systemBase, .. s_maximumEtc],
        Tmpfs = [new TmpfsMount("/tmp", 16L << 20)],
        WorkingDirectory = "/tmp",
        Timeout = TimeSpan.FromSeconds(10),
        StdoutLimitBytes = 1L << 20,
        StderrLimitBytes = 1L << 20,
        Resources = new ResourceLimits
        {
            MemoryBytes = 256L << 20,
            Cpus = 1,
            CpuTime = TimeSpan.FromSeconds(10),
            PidsLimit = 64,
            DeviceIo = [new DeviceIoLimit(DeviceIoLimit.Writable) { WriteBps = 16L << 20, WriteIops = 500 }],
        },
        // A file can be no larger than the level's /tmp; there is no writable bind to fill.
        Rlimits =
        [
            new Rlimit(RlimitResource.Core, 0, 0),
            new Rlimit(RlimitResource.NoFile, 256, 256),
            new Rlimit(RlimitResource.FileSize, 16UL << 20, 16UL << 20),
        ],
        SeccompProfile = "strict",
        OnViolation = ViolationAction.Kill,
        Landlock = true,
        AllowDegrade = false,
    };

    private static readonly SandboxPolicy s_balanced = SandboxPolicy.Default with
    {
        Network = NetworkMode.None,
        SystemPaths = [.. s_systemBase, "/etc"],
        Tmpfs = [new TmpfsMount("/tmp", 256L << 20)],
        WorkingDirectory = "/tmp",
        Timeout = null,
        StdoutLimitBytes = 16L << 20,
        StderrLimitBytes = 16L << 20,
        Resources = new ResourceLimits
        {
            MemoryBytes = 1L << 30,
            PidsLimit = 512,
            // Whatever disk a writable bind lands on, one sandbox cannot saturate it for the host.
            DeviceIo = [new DeviceIoLimit(DeviceIoLimit.Writable) { WriteBps = 64L << 20, WriteIops = 2000 }],
        },
        // The file size limit is what keeps a writable bind from filling the host's disk with one
        // file; a tmpfs is bounded by its own size and the memory limit.
        Rlimits = [.. SandboxPolicy.DefaultRlimits, new Rlimit(RlimitResource.FileSize, 1UL << 30, 1UL << 30)],
        SeccompProfile = "default",
        OnViolation = ViolationAction.Record,
        Landlock = false,
        AllowDegrade = false,
    };

    private static readonly SandboxPolicy s_development = SandboxPolicy.Default with
    {
        Network = NetworkMode.Host,
        SystemPaths = [.. s_systemBase, "/etc", "/opt", "/srv", "/var"],
        Tmpfs = [new TmpfsMount("/tmp", 1L << 30)],
        WorkingDirectory = "/tmp",
        Timeout = null,
        StdoutLimitBytes = 64L << 20,
        StderrLimitBytes = 64L << 20,
        Resources = new ResourceLimits { MemoryBytes = 4L << 30, PidsLimit = 4096, AllowUnenforced = true },
        Rlimits = [new Rlimit(RlimitResource.Core, 0, 0), new Rlimit(RlimitResource.NoFile, 4096, 4096)],
        SeccompProfile = "permissive",
        OnViolation = ViolationAction.Record,
        Landlock = false,
        AllowDegrade = true,
    };

    /// <summary>Every level, strictest first.</summary>
    public static ImmutableArray<IsolationLevel> All { get; } =
        [IsolationLevel.Maximum, IsolationLevel.Balanced, IsolationLevel.Development];

    /// <summary>The immutable policy of <paramref name="level"/>.</summary>
    public static SandboxPolicy Policy(IsolationLevel level) => level switch
    {
        IsolationLevel.Maximum => s_maximum,
        IsolationLevel.Balanced => s_balanced,
        IsolationLevel.Development => s_development,
        _ => throw new ArgumentOutOfRangeException(nameof(level), level, "not an isolation level"),
    };

    /// <summary>The level's name as files and the command line write it: <c>maximum</c>, <c>balanced</c>, <c>development</c>.</summary>
    public static string Name(IsolationLevel level) => level switch
    {
        IsolationLevel.Maximum => "maximum",
        IsolationLevel.Balanced => "balanced",
        IsolationLevel.Development => "development",
        _ => throw new ArgumentOutOfRangeException(nameof(level), level, "not an isolation level"),
    };

    /// <summary>Parses a level's name; a wrong one is a <see cref="PolicyException"/> for <paramref name="key"/>.</summary>
    public static IsolationLevel Parse(string key, string text)
    {
        foreach (IsolationLevel level in All)
        {
            if (text == Name(level))
            {
                return level;
            }
        }

        throw new PolicyException(key, $"'{text}' is not a level: use maximum, balanced or development");
    }
}
