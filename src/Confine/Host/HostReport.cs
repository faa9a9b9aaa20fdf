using System.Collections.Immutable;
using System.Text.Json.Serialization;

namespace Confine;

/// <summary>
/// What this host can give a sandbox, as <c>confine check</c> found it: kernel features probed for
/// real (a user namespace is created, a cgroup is made and removed), and for each
/// <see cref="IsolationLevel"/> whether it can run here and what to change when it cannot. The JSON
/// form (<c>confine check --json</c>) uses these names in snake_case; <see cref="Version"/> changes
/// when a key changes meaning or goes away.
/// </summary>
public sealed record HostReport
{
    /// <summary>The current version of the report's layout.</summary>
    public const int CurrentVersion = 1;

    /// <summary>Layout version of this report.</summary>
    public int Version { get; init; } = CurrentVersion;

    /// <summary>The process that ran the check: who it is and whether its helper can start.</summary>
    public required ConfineProcessFacts Confine { get; init; }

    /// <summary>The kernel and the system around it.</summary>
    public required KernelFacts Kernel { get; init; }

    /// <summary>Whether a user namespace (and with it every other) can be made.</summary>
    public required UserNamespaceFacts UserNamespaces { get; init; }

    /// <summary>The cgroup layout and which controllers Confine can use.</summary>
    public required CgroupFacts Cgroups { get; init; }

    /// <summary>Seccomp support in the kernel and this process's own mode.</summary>
    public required SeccompFacts Seccomp { get; init; }

    /// <summary>The system's libseccomp, which compiles the seccomp profiles.</summary>
    public required LibseccompFacts Libseccomp { get; init; }

    /// <summary>The Landlock ABI the kernel speaks.</summary>
    public required LandlockFacts Landlock { get; init; }

    /// <summary>Whether hardware virtualisation is available to this process.</summary>
    public required KvmFacts Kvm { get; init; }

    /// <summary>Other sandboxing tools found on the host, for reference.</summary>
    public ImmutableArray<BackendFacts> Backends { get; init; } = [];

    /// <summary>For each level, strictest first, whether it can run here.</summary>
    public ImmutableArray<LevelReadiness> Levels { get; init; } = [];
}

/// <summary>The process that ran the check.</summary>
/// <param name="Uid">Its effective user id.</param>
/// <param name="Gid">Its effective group id.</param>
/// <param name="Root">Whether it is root, which decides how ids are mapped and who may write cgroups.</param>
/// <param name="Helper">Path of the C helper that sets sandboxes up.</param>
/// <param name="HelperUsable">Whether the helper exists and is executable.</param>
/// <param name="HelperProblem">Why it is not, when it is not.</param>
public sealed record ConfineProcessFacts(uint Uid, uint Gid, bool Root, string Helper, bool HelperUsable, string? HelperProblem);

/// <summary>The kernel and the system around it.</summary>
/// <param name="Release">The kernel release, as <c>uname -r</c> prints it.</param>
/// <param name="Machine">The hardware name, as <c>uname -m</c> prints it.</param>
/// <param name="Distribution">The distribution's PRETTY_NAME from /etc/os-release.</param>
/// <param name="Container">
/// The container runtime Confine runs inside (<c>docker</c>, <c>podman</c>, <c>kubernetes</c>, ...), if any is recognised.
/// </param>
/// <param name="Wsl">Whether this is Windows Subsystem for Linux.</param>
public sealed record KernelFacts(string Release, string Machine, string? Distribution, string? Container, bool Wsl);

/// <summary>User namespace support, from the sysctls that gate it and a real trial.</summary>
public sealed record UserNamespaceFacts
{
    /// <summary>Whether a sandbox with every namespace could be started here.</summary>
    public required bool Usable { get; init; }

    /// <summary><c>user.max_user_namespaces</c>; 0 forbids user namespaces to everyone.</summary>
    public long? MaxUserNamespaces { get; init; }

    /// <summary><c>kernel.unprivileged_userns_clone</c> (Debian's and older Ubuntu's patch); 0 forbids them to ordinary users.</summary>
    public int? UnprivilegedUsernsClone { get; init; }

    /// <summary>
    /// <c>kernel.apparmor_restrict_unprivileged_userns</c> (Ubuntu 23.10 and later); 1 leaves an ordinary
    /// user's namespaces without capabilities.
    /// </summary>
    public int? ApparmorRestrictUnprivilegedUserns { get; init; }

    /// <summary>The trial: a sandbox started with every namespace and no limits, running <c>true</c>.</summary>
    public required SandboxTrial Trial { get; init; }

    /// <summary>Why user namespaces are not usable, when they are not.</summary>
    public string? Problem { get; init; }

    /// <summary>What to change so they are, when they are not.</summary>
    public string? Fix { get; init; }
}

/// <summary>The outcome of starting one real sandbox.</summary>
/// <param name="Ok">Whether the command ran to an exit status of 0.</param>
/// <param name="Step">The setup step that failed (as in a verdict's <c>error.step</c>).</param>
/// <param name="Errno">The errno name of the failure.</param>
/// <param name="Message">The verdict's one-line message.</param>
public sealed record SandboxTrial(bool Ok, string? Step, string? Errno, string? Message);

/// <summary>The cgroup layout.</summary>
/// <param name="Version"><c>v2</c> (unified), <c>v1</c>, <c>hybrid</c> (v1 controllers beside a cgroup2 mount), or <c>none</c>.</param>
/// <param name="Controllers">The controllers Confine uses, each with whether Confine can use it.</param>
/// <param name="SwapAccounting">Whether the memory controller can limit swap; null when unknown.</param>
/// <param name="SwapDevices">Whether the host has any swap at all (if not, "no swap" needs no limit).</param>
public sealed record CgroupFacts(string Version, ImmutableArray<ControllerFacts> Controllers, bool? SwapAccounting, bool SwapDevices);

/// <summary>One cgroup controller.</summary>
/// <param name="Name">
/// The controller's name (<c>memory</c>, <c>pids</c>, <c>cpu</c>, <c>cpuacct</c>, <c>cpuset</c>, <c>blkio</c> or <c>io</c>).
/// </param>
/// <param name="Mounted">Whether a hierarchy with it is mounted.</param>
/// <param name="Directory">Confine's own cgroup directory in that hierarchy.</param>
/// <param name="Usable">Whether Confine could create a cgroup with this controller there (tried for real).</param>
/// <param name="Problem">Why it cannot, when it cannot.</param>
/// <param name="Fix">What would make it usable, when it is not.</param>
public sealed record ControllerFacts(string Name, bool Mounted, string? Directory, bool Usable, string? Problem, string? Fix);

/// <summary>Seccomp support.</summary>
/// <param name="Filters">Whether the kernel supports seccomp filters (CONFIG_SECCOMP_FILTER).</param>
/// <param name="Mode">This process's own seccomp mode: 0 none, 1 strict, 2 filtered (as inside most containers).</param>
/// <param name="Actions">The filter actions the kernel offers (/proc/sys/kernel/seccomp/actions_avail).</param>
/// <param name="UserNotif">Whether violations can be recorded through a user-space notifier (Linux 5.0+).</param>
/// <param name="KillProcess">Whether a violation can kill the whole process (Linux 4.14+).</param>
public sealed record SeccompFacts(bool Filters, int? Mode, ImmutableArray<string> Actions, bool UserNotif, bool KillProcess);

/// <summary>The system's libseccomp.</summary>
/// <param name="Loaded">Whether <c>libseccomp.so.2</c> could be loaded.</param>
/// <param name="Version">Its version, when it says.</param>
public sealed record LibseccompFacts(bool Loaded, string? Version);

/// <summary>Landlock support.</summary>
/// <param name="Abi">The highest ABI version the kernel supports; null when it has none.</param>
/// <param name="Problem">Why Landlock is not available, when it is not.</param>
public sealed record LandlockFacts(int? Abi, string? Problem);

/// <summary>Hardware virtualisation.</summary>
/// <param name="Present">Whether <c>/dev/kvm</c> exists.</param>
/// <param name="Accessible">Whether this process could open it for reading and writing.</param>
/// <param name="Problem">Why it could not, when it exists but could not be opened.</param>
public sealed record KvmFacts(bool Present, bool Accessible, string? Problem);

/// <summary>Another sandboxing tool, found or not.</summary>
/// <param name="Name">Its command name.</param>
/// <param name="Path">Where it was found; null when it was not.</param>
public sealed record BackendFacts(string Name, string? Path);

/// <summary>Whether a level can run on this host.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<Readiness>))]
public enum Readiness
{
    /// <summary>Everything the level asks for is available.</summary>
    [JsonStringEnumMemberName("ready")] Ready,

    /// <summary>It runs, since it allows degrading, but without some protections or limits.</summary>
    [JsonStringEnumMemberName("weakened")] Weakened,

    /// <summary>It does not run until the host changes (or <c>--allow-degrade</c> is given, where that helps).</summary>
    [JsonStringEnumMemberName("blocked")] Blocked,
}

/// <summary>One level's readiness.</summary>
/// <param name="Level">The level's name.</param>
/// <param name="Status">Whether it can run.</param>
/// <param name="Findings">Each protection the host cannot give, with its fix.</param>
public sealed record LevelReadiness(string Level, Readiness Status, ImmutableArray<HostFinding> Findings);

/// <summary>One protection a policy asks for that the host cannot give.</summary>
/// <param name="Key">The policy key it belongs to (<c>resources.memory</c>, <c>landlock</c>).</param>
/// <param name="Blocks">Whether it stops the run (the policy does not allow degrading, or nothing could run).</param>
/// <param name="Problem">What is missing, in plain words.</param>
/// <param name="Fix">The exact change that would provide it.</param>
public sealed record HostFinding(string Key, bool Blocks, string Problem, string Fix);
