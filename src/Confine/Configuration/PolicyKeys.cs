using System.Collections.Immutable;

namespace Confine.Configuration;

/// <summary>What shape of value a key takes, for its description and the schema.</summary>
internal enum PolicyKeyShape
{
    /// <summary>A single value.</summary>
    Value,

    /// <summary>A map whose keys are listed in <see cref="PolicyKey.Members"/>.</summary>
    Map,

    /// <summary>A map whose keys are free (environment variable names).</summary>
    FreeMap,

    /// <summary>A list whose items are values or maps with the keys in <see cref="PolicyKey.Members"/>.</summary>
    List,
}

/// <summary>One key a policy file may hold.</summary>
internal sealed record PolicyKey(string Name, PolicyKeyShape Shape, string Meaning)
{
    public ImmutableArray<PolicyKey> Members { get; init; } = [];
}

/// <summary>
/// Every key a policy file may hold. The reader accepts exactly these (anything else is an unknown
/// key), and tests hold docs/policy.schema.json and docs/configuration.md to the same list.
/// </summary>
internal static class PolicyKeys
{
    public static ImmutableArray<PolicyKey> Binds { get; } =
    [
        new("source", PolicyKeyShape.Value, "host path; relative paths are relative to the policy file"),
        new("target", PolicyKeyShape.Value, "path inside the sandbox (default: the same as source)"),
        new("writable", PolicyKeyShape.Value, "whether the sandbox may write through it (default false)"),
    ];

    public static ImmutableArray<PolicyKey> Tmpfs { get; } =
    [
        new("target", PolicyKeyShape.Value, "path inside the sandbox"),
        new("size", PolicyKeyShape.Value, "most bytes it holds (default 64m)"),
        new("inodes", PolicyKeyShape.Value, "most files it holds (default one per 4 KiB of size)"),
    ];

    public static ImmutableArray<PolicyKey> Limits { get; } =
    [
        new("stdout", PolicyKeyShape.Value, "bytes of standard output before the run is stopped"),
        new("stderr", PolicyKeyShape.Value, "bytes of standard error before the run is stopped"),
    ];

    public static ImmutableArray<PolicyKey> DeviceIo { get; } =
    [
        new("device", PolicyKeyShape.Value, "block device path or MAJOR:MINOR"),
        new("read_bps", PolicyKeyShape.Value, "read bytes per second"),
        new("write_bps", PolicyKeyShape.Value, "write bytes per second"),
        new("read_iops", PolicyKeyShape.Value, "read operations per second"),
        new("write_iops", PolicyKeyShape.Value, "write operations per second"),
    ];

    public static ImmutableArray<PolicyKey> Resources { get; } =
    [
        new("memory", PolicyKeyShape.Value, "memory limit of the whole sandbox (cgroup)"),
        new("memory_swap", PolicyKeyShape.Value, "memory plus swap; unset with a memory limit means no swap, -1 unlimited swap"),
        new("cpus", PolicyKeyShape.Value, "CPU bandwidth in cores, fractional"),
        new("cpuset_cpus", PolicyKeyShape.Value, "CPUs it may run on, as a list such as 0-1,3"),
        new("cpu_time", PolicyKeyShape.Value, "CPU time of the whole sandbox; past it the run ends as cpu_time_limit"),
        new("pids_limit", PolicyKeyShape.Value, "most processes and threads alive at once"),
        new("device_io", PolicyKeyShape.List, "per-device I/O limits") { Members = DeviceIo },
        new("allow_unenforced", PolicyKeyShape.Value, "run even when a limit's cgroup controller is missing; the verdict lists it"),
        new("cgroup_parent", PolicyKeyShape.Value, "cgroup beneath which the sandbox's cgroup is made (default: Confine's own)"),
    ];

    public static ImmutableArray<PolicyKey> Rlimits { get; } =
        [.. PolicySyntax.RlimitNames.Select(n => new PolicyKey(n.Name, PolicyKeyShape.Value, $"RLIMIT_{n.Resource switch
        {
            RlimitResource.FileSize => "FSIZE",
            RlimitResource.AddressSpace => "AS",
            _ => n.Name.ToUpperInvariant(),
        }}, as SOFT[:HARD], a number, or unlimited"))];

    public static ImmutableArray<PolicyKey> Root { get; } =
    [
        new("level", PolicyKeyShape.Value, "the preset the file refines: maximum, balanced or development"),
        new("hostname", PolicyKeyShape.Value, "host name inside the sandbox"),
        new("network", PolicyKeyShape.Value, "none (own loopback only) or host"),
        new("user", PolicyKeyShape.Value, "UID[:GID] inside the sandbox; always mapped to an unprivileged host id"),
        new("workdir", PolicyKeyShape.Value, "working directory inside the sandbox"),
        new("env", PolicyKeyShape.FreeMap, "environment variables; null removes one the level sets"),
        new("binds", PolicyKeyShape.List, "host paths bound into the sandbox") { Members = Binds },
        new("tmpfs", PolicyKeyShape.List, "private tmpfs mounts") { Members = Tmpfs },
        new("system_paths", PolicyKeyShape.List, "host system directories or files mounted read-only at the same path"),
        new("timeout", PolicyKeyShape.Value, "wall-clock limit; null for none"),
        new("limits", PolicyKeyShape.Map, "output limits") { Members = Limits },
        new("resources", PolicyKeyShape.Map, "cgroup limits") { Members = Resources },
        new("rlimits", PolicyKeyShape.Map, "per-process limits set with setrlimit") { Members = Rlimits },
        new("seccomp_profile", PolicyKeyShape.Value, "default, strict, permissive, or the path of a profile file"),
        new("on_violation", PolicyKeyShape.Value, "record (the call fails, the run goes on) or kill"),
        new("landlock", PolicyKeyShape.Value, "confine file access with Landlock too (Linux 5.13+)"),
        new("allow_degrade", PolicyKeyShape.Value,
            "run with what the host can give when it cannot give everything; the verdict lists what was weakened"),
    ];

    /// <summary>
    /// Every accepted key as a dotted path: <c>resources.memory</c>, <c>binds[].source</c>. A free map
    /// (<c>env</c>) is listed by its own name only.
    /// </summary>
    public static IEnumerable<string> Paths() => PathsOf(Root, "");

    private static IEnumerable<string> PathsOf(ImmutableArray<PolicyKey> keys, string prefix)
    {
        foreach (PolicyKey key in keys)
        {
            string path = prefix + key.Name;
            yield return path;
            string childPrefix = key.Shape == PolicyKeyShape.List ? path + "[]." : path + ".";
            foreach (string child in PathsOf(key.Members, childPrefix))
            {
                yield return child;
            }
        }
    }
}
