using System.Text.Json;

namespace Confine.Configuration;

/// <summary>One value of a policy document: its path (<c>tmpfs[0]</c>) and what it is (<c>tmpfs[/tmp]</c>).</summary>
/// <param name="Path">The path as the document and the validator write it.</param>
/// <param name="Identity">What stays the same when the list around it changes.</param>
/// <param name="Alias">Another path the validator may use for it (<c>rlimits[1]</c> for <c>rlimits.nofile</c>).</param>
internal readonly record struct PolicyLeaf(string Path, string Identity, string? Alias = null)
{
    /// <summary>Whether an error about <paramref name="path"/> is about this value or a part of it.</summary>
    public bool Matches(string path) => Covers(Path, path) || (Alias is not null && Covers(Alias, path));

    private static bool Covers(string leaf, string path) =>
        path == leaf
        || (path.Length > leaf.Length && path.StartsWith(leaf, StringComparison.Ordinal) && path[leaf.Length] is '.' or '[');
}

/// <summary>
/// A policy written in the policy file's own format, so that what <c>confine policy show</c> prints
/// can be saved and loaded back as the same policy; and the list of its values, for origins.
/// </summary>
internal static class PolicyDocument
{
    public const string BindsPrefix = "binds[";
    public const string TmpfsPrefix = "tmpfs[";
    public const string DeviceIoPrefix = "resources.device_io[";

    public static string BindIdentity(BindMount bind) => $"{BindsPrefix}{bind.Target}]";

    public static string TmpfsIdentity(TmpfsMount tmpfs) => $"{TmpfsPrefix}{tmpfs.Target}]";

    public static string DeviceIoIdentity(string device) => $"{DeviceIoPrefix}{device}]";

    /// <summary>Every value of <paramref name="policy"/>, in document order.</summary>
    public static IEnumerable<PolicyLeaf> Leaves(SandboxPolicy policy)
    {
        foreach (string key in (string[])["hostname", "network", "user", "workdir"])
        {
            yield return new PolicyLeaf(key, key);
        }

        foreach (string name in policy.Environment.Keys)
        {
            yield return new PolicyLeaf($"env.{name}", $"env.{name}");
        }

        yield return new PolicyLeaf("system_paths", "system_paths");
        for (int i = 0; i < policy.Binds.Length; i++)
        {
            yield return new PolicyLeaf($"binds[{i}]", BindIdentity(policy.Binds[i]));
        }

        for (int i = 0; i < policy.Tmpfs.Length; i++)
        {
            yield return new PolicyLeaf($"tmpfs[{i}]", TmpfsIdentity(policy.Tmpfs[i]));
        }

        foreach (string key in (string[])["timeout", "limits.stdout", "limits.stderr"])
        {
            yield return new PolicyLeaf(key, key);
        }

        foreach (string key in (string[])["memory", "memory_swap", "cpus", "cpuset_cpus", "cpu_time", "pids_limit"])
        {
            yield return new PolicyLeaf($"resources.{key}", $"resources.{key}");
        }

        for (int i = 0; i < policy.Resources.DeviceIo.Length; i++)
        {
            yield return new PolicyLeaf($"resources.device_io[{i}]", DeviceIoIdentity(policy.Resources.DeviceIo[i].Device));
        }

        yield return new PolicyLeaf("resources.allow_unenforced", "resources.allow_unenforced");
        yield return new PolicyLeaf("resources.cgroup_parent", "resources.cgroup_parent");
        for (int i = 0; i < policy.Rlimits.Length; i++)
        {
            string name = $"rlimits.{PolicySyntax.RlimitName(policy.Rlimits[i].Resource)}";
            yield return new PolicyLeaf(name, name, $"rlimits[{i}]");
        }

        foreach (string key in (string[])["seccomp_profile", "on_violation", "landlock", "allow_degrade"])
        {
            yield return new PolicyLeaf(key, key);
        }
    }

    /// <summary>Writes <paramref name="policy"/> as a policy file's object, every key present.</summary>
    public static void Write(Utf8JsonWriter writer, SandboxPolicy policy, IsolationLevel? level)
    {
        writer.WriteStartObject();
        if (level is IsolationLevel named)
        {
            writer.WriteString("level", IsolationLevels.Name(named));
        }

        writer.WriteString("hostname", policy.Hostname);
        writer.WriteString("network", PolicySyntax.FormatNetwork(policy.Network));
        writer.WriteString("user", policy.User.ToString());
        writer.WriteString("workdir", policy.WorkingDirectory);

        writer.WriteStartObject("env");
        foreach ((string name, string value) in policy.Environment)
        {
            writer.WriteString(name, value);
        }

        writer.WriteEndObject();

        writer.WriteStartArray("system_paths");
        foreach (string path in policy.SystemPaths)
        {
            writer.WriteStringValue(path);
        }

        writer.WriteEndArray();

        writer.WriteStartArray("binds");
        foreach (BindMount bind in policy.Binds)
        {
            writer.WriteStartObject();
            writer.WriteString("source", bind.Source);
            writer.WriteString("target", bind.Target);
            writer.WriteBoolean("writable", bind.Writable);
            writer.WriteEndObject();
        }

        writer.WriteEndArray();

        writer.WriteStartArray("tmpfs");
        foreach (TmpfsMount tmpfs in policy.Tmpfs)
        {
            writer.WriteStartObject();
            writer.WriteString("target", tmpfs.Target);
            writer.WriteString("size", Units.FormatSize(tmpfs.SizeBytes));
            if (tmpfs.Inodes is long inodes)
            {
                writer.WriteNumber("inodes", inodes);
            }

            writer.WriteEndObject();
        }

        writer.WriteEndArray();

        WriteOptional(writer, "timeout", policy.Timeout is TimeSpan t ? Units.FormatDuration(t) : null);
        writer.WriteStartObject("limits");
        writer.WriteString("stdout", Units.FormatSize(policy.StdoutLimitBytes));
        writer.WriteString("stderr", Units.FormatSize(policy.StderrLimitBytes));
        writer.WriteEndObject();

        WriteResources(writer, policy.Resources);

        writer.WriteStartObject("rlimits");
        foreach (Rlimit limit in policy.Rlimits)
        {
            writer.WriteString(PolicySyntax.RlimitName(limit.Resource), PolicySyntax.FormatRlimit(limit));
        }

        writer.WriteEndObject();

        writer.WriteString("seccomp_profile", policy.SeccompProfile);
        writer.WriteString("on_violation", PolicySyntax.FormatViolationAction(policy.OnViolation));
        writer.WriteBoolean("landlock", policy.Landlock);
        writer.WriteBoolean("allow_degrade", policy.AllowDegrade);
        writer.WriteEndObject();
    }

    private static void WriteResources(Utf8JsonWriter writer, ResourceLimits resources)
    {
        writer.WriteStartObject("resources");
        WriteOptional(writer, "memory", resources.MemoryBytes is long memory ? Units.FormatSize(memory) : null);
        WriteOptional(writer, "memory_swap", resources.MemorySwapBytes is long swap ? PolicySyntax.FormatMemorySwap(swap) : null);
        if (resources.Cpus is double cpus)
        {
            writer.WriteNumber("cpus", cpus);
        }
        else
        {
            writer.WriteNull("cpus");
        }

        WriteOptional(writer, "cpuset_cpus", resources.CpusetCpus);
        WriteOptional(writer, "cpu_time", resources.CpuTime is TimeSpan cpuTime ? Units.FormatDuration(cpuTime) : null);
        if (resources.PidsLimit is int pids)
        {
            writer.WriteNumber("pids_limit", pids);
        }
        else
        {
            writer.WriteNull("pids_limit");
        }

        writer.WriteStartArray("device_io");
        foreach (DeviceIoLimit device in resources.DeviceIo)
        {
            writer.WriteStartObject();
            writer.WriteString("device", device.Device);
            if (device.ReadBps is long readBps)
            {
                writer.WriteString("read_bps", Units.FormatSize(readBps));
            }

            if (device.WriteBps is long writeBps)
            {
                writer.WriteString("write_bps", Units.FormatSize(writeBps));
            }

            if (device.ReadIops is long readIops)
            {
                writer.WriteNumber("read_iops", readIops);
            }

            if (device.WriteIops is long writeIops)
            {
                writer.WriteNumber("write_iops", writeIops);
            }

            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        writer.WriteBoolean("allow_unenforced", resources.AllowUnenforced);
        WriteOptional(writer, "cgroup_parent", resources.CgroupParent);
        writer.WriteEndObject();
    }

    private static void WriteOptional(Utf8JsonWriter writer, string name, string? value)
    {
        if (value is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteString(name, value);
        }
    }
}
