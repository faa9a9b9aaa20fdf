using System.Collections.Immutable;

namespace Confine;

/// <summary>
/// Everything a sandbox is allowed to see and do. Immutable: refine a policy with <c>with</c>
/// expressions; it is validated before every run.
/// </summary>
public sealed record SandboxPolicy
{
    /// <summary>The hostname the command sees (UTS namespace).</summary>
    public string Hostname { get; init; } = "sandbox";

    /// <summary>Network access. <see cref="NetworkMode.None"/> gives a namespace with only its own loopback.</summary>
    public NetworkMode Network { get; init; } = NetworkMode.None;

    /// <summary>The user and group the command runs as inside the sandbox.</summary>
    public SandboxUser User { get; init; } = SandboxUser.Root;

    /// <summary>
    /// Host directories mounted read-only at the same path, <c>nosuid,nodev</c>. A host path that is a
    /// symbolic link (as <c>/bin</c> is on merged-/usr systems) is recreated as the same link. A
    /// path missing on the host is skipped: these are the system's own directories, not the caller's.
    /// </summary>
    public ImmutableArray<string> SystemPaths { get; init; } = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"];

    /// <summary>Further host paths bound into the sandbox (<c>-v HOST:SANDBOX[:ro|rw]</c>).</summary>
    public ImmutableArray<BindMount> Binds { get; init; } = [];

    /// <summary>Private tmpfs mounts, each with a size and inode cap.</summary>
    public ImmutableArray<TmpfsMount> Tmpfs { get; init; } = [new TmpfsMount("/tmp", 64L << 20)];

    /// <summary>The command's working directory inside the sandbox.</summary>
    public string WorkingDirectory { get; init; } = "/tmp";

    /// <summary>The command's whole environment: nothing of the caller's is passed unless listed here.</summary>
    public ImmutableSortedDictionary<string, string> Environment { get; init; } = DefaultEnvironment;

    /// <summary>Wall-clock limit, measured from the moment the command is executed; null for none.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Bytes of standard output kept or forwarded before the run is stopped with <c>output_limit</c>.</summary>
    public long StdoutLimitBytes { get; init; } = 16L << 20;

    /// <summary>Bytes of standard error kept or forwarded before the run is stopped with <c>output_limit</c>.</summary>
    public long StderrLimitBytes { get; init; } = 16L << 20;

    /// <summary>cgroup limits: memory, CPU, processes, I/O.</summary>
    public ResourceLimits Resources { get; init; } = ResourceLimits.None;

    /// <summary>
    /// Resource limits set with <c>setrlimit</c> just before the command runs. Core dumps are always
    /// off whatever this says, since a core file can carry the sandbox's secrets out.
    /// </summary>
    public ImmutableArray<Rlimit> Rlimits { get; init; } = DefaultRlimits;

    /// <summary>
    /// The seccomp profile: a built-in name (<c>default</c>, <c>strict</c>, <c>permissive</c>), the path
    /// of a profile file (docs/seccomp.md), or <c>unconfined</c> for no syscall filter at all, which
    /// leaves the kernel's whole surface open and is meant only for measuring the filter's cost.
    /// </summary>
    public string SeccompProfile { get; init; } = "default";

    /// <summary>What a refused call of the dangerous kind does to the run.</summary>
    public ViolationAction OnViolation { get; init; } = ViolationAction.Record;

    /// <summary>
    /// Whether Landlock confines filesystem access to what the policy mounts, as a second layer
    /// under the mount namespace (Linux 5.13 and later).
    /// </summary>
    public bool Landlock { get; init; }

    /// <summary>
    /// Run with the strongest setting the host allows when it cannot give everything the policy asks
    /// for; every weakened item is listed in the verdict. Off by default: the run fails instead.
    /// </summary>
    public bool AllowDegrade { get; init; }

    /// <summary>
    /// Host ids that the sandbox's ids map to when Confine runs as root: sandbox id N is host id
    /// <c>HostIdBase + N</c> for N below 65536. An ordinary user can map only its own id, so there the
    /// sandbox's single id is the caller's own.
    /// </summary>
    public uint HostIdBase { get; init; } = 1_000_000_000;

    /// <summary>The environment every sandbox starts with.</summary>
    public static ImmutableSortedDictionary<string, string> DefaultEnvironment { get; } =
        ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, new Dictionary<string, string>
        {
            ["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            ["HOME"] = "/tmp",
            ["LANG"] = "C.UTF-8",
            ["TERM"] = "dumb",
        });

    /// <summary>The rlimits every sandbox starts with.</summary>
    public static ImmutableArray<Rlimit> DefaultRlimits { get; } =
    [
        new Rlimit(RlimitResource.Core, 0, 0),
        new Rlimit(RlimitResource.NoFile, 1024, 1024),
    ];

    // Declared after the defaults it reads: static initialisers run in textual order.
    /// <summary>
    /// The library's baseline when the caller gives no policy: every namespace, only the sandbox's own
    /// loopback, the system directories read-only, a 64 MiB <c>/tmp</c>, and no cgroup limits, so it
    /// runs wherever namespaces do. The command line starts from <see cref="IsolationLevel.Balanced"/>
    /// instead, which adds memory and process limits; <see cref="IsolationLevels.Policy"/> gives each level.
    /// </summary>
    public static SandboxPolicy Default { get; } = new();
}

/// <summary>What happens when the sandbox makes a call its seccomp profile refuses as dangerous.</summary>
public enum ViolationAction
{
    /// <summary>The call fails with EPERM and the attempt is recorded in the verdict; the run goes on.</summary>
    Record,

    /// <summary>The attempt is recorded and the whole sandbox is killed; the verdict's status is <c>violation</c>.</summary>
    Kill,
}

/// <summary>Network access for a sandbox.</summary>
public enum NetworkMode
{
    /// <summary>A private network namespace holding only its own loopback interface, brought up.</summary>
    None,

    /// <summary>The host's network. Only when asked for explicitly: it exposes every host service.</summary>
    Host,
}

/// <summary>The ids a command runs as inside the sandbox.</summary>
public readonly record struct SandboxUser(uint Uid, uint Gid)
{
    /// <summary>The sandbox's own root, which maps to an unprivileged id outside.</summary>
    public static SandboxUser Root { get; } = new(0, 0);

    /// <summary>The highest id a sandbox can use: ids are mapped as a 65536-wide range.</summary>
    public const uint MaxId = 65535;

    /// <summary>Parses <c>UID[:GID]</c>; the group defaults to the uid.</summary>
    public static SandboxUser Parse(string text)
    {
        string[] parts = text.Split(':');
        if (parts.Length > 2 || !TryParseId(parts[0], out uint uid)
            || (parts.Length == 2 && !TryParseId(parts[1], out _)))
        {
            throw new PolicyException("user", $"'{text}' is not UID[:GID] with numeric ids from 0 to {MaxId}");
        }

        uint gid = uid;
        if (parts.Length == 2)
        {
            TryParseId(parts[1], out gid);
        }

        return new SandboxUser(uid, gid);
    }

    private static bool TryParseId(string text, out uint id) =>
        uint.TryParse(text, System.Globalization.NumberStyles.None, null, out id) && id <= MaxId;

    /// <inheritdoc />
    public override string ToString() => $"{Uid}:{Gid}";
}

/// <summary>A host path bound into the sandbox.</summary>
/// <param name="Source">Absolute host path; it must exist.</param>
/// <param name="Target">Absolute path inside the sandbox.</param>
/// <param name="Writable">Whether the sandbox may write through it; read-only by default.</param>
public sealed record BindMount(string Source, string Target, bool Writable = false)
{
    /// <summary>Parses Docker's <c>HOST:SANDBOX[:ro|rw]</c> (and <c>HOST</c> alone, bound at the same path).</summary>
    public static BindMount Parse(string text)
    {
        string[] parts = text.Split(':');
        if (parts.Length is < 1 or > 3 || parts.Any(p => p.Length == 0))
        {
            throw new PolicyException("binds", $"'{text}' is not HOST:SANDBOX[:ro|rw]");
        }

        bool writable = false;
        if (parts.Length == 3)
        {
            writable = parts[2] switch
            {
                "rw" => true,
                "ro" => false,
                _ => throw new PolicyException("binds", $"'{text}': mode must be 'ro' or 'rw', not '{parts[2]}'"),
            };
        }

        return new BindMount(parts[0], parts.Length >= 2 ? parts[1] : parts[0], writable);
    }
}

/// <summary>A private tmpfs inside the sandbox.</summary>
/// <param name="Target">Absolute path inside the sandbox.</param>
/// <param name="SizeBytes">The most bytes it can hold.</param>
/// <param name="Inodes">The most files it can hold; null derives one inode per 4 KiB of size.</param>
public sealed record TmpfsMount(string Target, long SizeBytes, long? Inodes = null)
{
    /// <summary>The inode cap in force.</summary>
    public long EffectiveInodes => Inodes ?? Math.Max(64, SizeBytes / 4096);
}

/// <summary>An rlimit applied to the command.</summary>
public sealed record Rlimit(RlimitResource Resource, ulong Soft, ulong Hard)
{
    /// <summary>The kernel's value for "no limit".</summary>
    public const ulong Infinity = ulong.MaxValue;
}

/// <summary>Resources that rlimits govern, numbered as in Linux's <c>asm-generic/resource.h</c>.</summary>
public enum RlimitResource
{
    /// <summary>CPU seconds of one process (RLIMIT_CPU).</summary>
    Cpu = 0,
    /// <summary>Largest file a process may create (RLIMIT_FSIZE).</summary>
    FileSize = 1,
    /// <summary>Data segment size (RLIMIT_DATA).</summary>
    Data = 2,
    /// <summary>Stack size (RLIMIT_STACK).</summary>
    Stack = 3,
    /// <summary>Core file size (RLIMIT_CORE).</summary>
    Core = 4,
    /// <summary>Processes of the user (RLIMIT_NPROC); counted per host uid, so prefer the pids limit.</summary>
    NProc = 6,
    /// <summary>Open file descriptors (RLIMIT_NOFILE).</summary>
    NoFile = 7,
    /// <summary>Locked memory (RLIMIT_MEMLOCK).</summary>
    MemLock = 8,
    /// <summary>Address space (RLIMIT_AS).</summary>
    AddressSpace = 9,
    /// <summary>Pending signals (RLIMIT_SIGPENDING).</summary>
    SigPending = 11,
    /// <summary>POSIX message queue bytes (RLIMIT_MSGQUEUE).</summary>
    MsgQueue = 12,
}
