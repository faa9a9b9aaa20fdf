using System.Globalization;
using System.Text;

namespace Confine.Configuration;

/// <summary>
/// The knob-by-knob table of docs/levels.md, rendered from the levels' policies themselves, so the
/// document cannot say one thing while the code does another (a test compares them).
/// </summary>
internal static class LevelTable
{
    /// <summary>One row: a knob, how each level sets it, and what it means.</summary>
    private sealed record Row(string Knob, string Meaning, Func<SandboxPolicy, string> Cell);

    private static readonly Row[] s_rows =
    [
        new("namespaces", "kernel namespaces the sandbox gets; every level has its own user, mount, PID, IPC, UTS and cgroup namespace",
            p => p.Network == NetworkMode.None ? "all 7 (user, mount, PID, network, IPC, UTS, cgroup)" : "6: all but network"),
        new("host ids", "what the sandbox's root is outside; no option makes it the host's root",
            p => $"sandbox 0-65535 → host {p.HostIdBase.ToString(CultureInfo.InvariantCulture)}+ as root; the caller's own id rootless"),
        new("network", Meaning("network"), p => p.Network == NetworkMode.None ? "`none`: own loopback only, up" : "`host`"),
        new("system_paths", Meaning("system_paths"), p => string.Join(" ", p.SystemPaths.Select(s => $"`{s}`"))),
        new("tmpfs", Meaning("tmpfs") + "; the root itself is always read-only",
            p => p.Tmpfs.IsEmpty ? "none" : string.Join(" ", p.Tmpfs.Select(t => $"`{t.Target}` {Units.FormatSize(t.SizeBytes)}"))),
        new("workdir", Meaning("workdir"), p => $"`{p.WorkingDirectory}`"),
        new("binds", Meaning("binds"), p => p.Binds.IsEmpty ? "none" : string.Join(" ", p.Binds.Select(b => $"`{b.Source}:{b.Target}`"))),
        new("user", Meaning("user"), p => $"`{p.User}`"),
        new("hostname", Meaning("hostname"), p => $"`{p.Hostname}`"),
        new("env", Meaning("env"), p => string.Join(" ", p.Environment.Select(e => $"`{e.Key}={e.Value}`"))),
        new("timeout", Meaning("timeout"), p => p.Timeout is TimeSpan t ? Units.FormatDuration(t) : "none"),
        new("limits.stdout", Meaning("limits.stdout"), p => Units.FormatSize(p.StdoutLimitBytes)),
        new("limits.stderr", Meaning("limits.stderr"), p => Units.FormatSize(p.StderrLimitBytes)),
        new("resources.memory", Meaning("resources.memory"), p => p.Resources.MemoryBytes is long m ? Units.FormatSize(m) : "none"),
        new("resources.memory_swap", Meaning("resources.memory_swap"), p => p.Resources.MemorySwapBytes switch
        {
            -1 => "unlimited swap",
            long s => Units.FormatSize(s),
            null when p.Resources.MemoryBytes is not null => "no swap",
            null => "none",
        }),
        new("resources.cpus", Meaning("resources.cpus"),
            p => p.Resources.Cpus is double c ? c.ToString(CultureInfo.InvariantCulture) : "none"),
        new("resources.cpuset_cpus", Meaning("resources.cpuset_cpus"), p => p.Resources.CpusetCpus ?? "any"),
        new("resources.cpu_time", Meaning("resources.cpu_time"), p => p.Resources.CpuTime is TimeSpan t ? Units.FormatDuration(t) : "none"),
        new("resources.pids_limit", Meaning("resources.pids_limit"),
            p => p.Resources.PidsLimit is int n ? n.ToString(CultureInfo.InvariantCulture) : "none"),
        new("resources.device_io", Meaning("resources.device_io"),
            p => p.Resources.DeviceIo.IsEmpty ? "none" : string.Join("; ", p.Resources.DeviceIo.Select(DescribeDeviceIo))),
        new("resources.allow_unenforced", Meaning("resources.allow_unenforced"), p => Flag(p.Resources.AllowUnenforced)),
        new("resources.cgroup_parent", Meaning("resources.cgroup_parent"), p => p.Resources.CgroupParent ?? "Confine's own"),
        new("rlimits", Meaning("rlimits") + "; core dumps are always off",
            p => string.Join(" ", p.Rlimits.Select(r => $"`{PolicySyntax.RlimitName(r.Resource)}={PolicySyntax.FormatRlimit(r)}`"))),
        new("seccomp_profile", Meaning("seccomp_profile"), p => $"`{p.SeccompProfile}`"),
        new("on_violation", Meaning("on_violation"), p => $"`{PolicySyntax.FormatViolationAction(p.OnViolation)}`"),
        new("landlock", Meaning("landlock"), p => Flag(p.Landlock)),
        new("allow_degrade", Meaning("allow_degrade"), p => Flag(p.AllowDegrade)),
    ];

    /// <summary>The knobs the table shows, in order.</summary>
    public static IEnumerable<string> Knobs => s_rows.Select(r => r.Knob);

    /// <summary>The Markdown table, one row per knob and one column per level.</summary>
    public static string Markdown()
    {
        var text = new StringBuilder();
        text.Append("| knob |");
        foreach (IsolationLevel level in IsolationLevels.All)
        {
            text.Append($" `{IsolationLevels.Name(level)}` |");
        }

        text.Append(" meaning |\n| --- |");
        foreach (IsolationLevel _ in IsolationLevels.All)
        {
            text.Append(" --- |");
        }

        text.Append(" --- |\n");
        foreach (Row row in s_rows)
        {
            text.Append($"| `{row.Knob}` |");
            foreach (IsolationLevel level in IsolationLevels.All)
            {
                text.Append($" {row.Cell(IsolationLevels.Policy(level))} |");
            }

            text.Append($" {row.Meaning} |\n");
        }

        return text.ToString();
    }

    private static string Flag(bool value) => value ? "yes" : "no";

    /// <summary>The key's description from <see cref="PolicyKeys"/>, so the two cannot disagree.</summary>
    private static string Meaning(string path)
    {
        IEnumerable<PolicyKey> keys = PolicyKeys.Root;
        PolicyKey? found = null;
        foreach (string part in path.Split('.'))
        {
            found = keys.First(k => k.Name == part);
            keys = found.Members;
        }

        return found!.Meaning;
    }

    private static string DescribeDeviceIo(DeviceIoLimit limit)
    {
        IEnumerable<string> rates = new (long? Rate, string Text)[]
            {
                (limit.ReadBps, $"read {Units.FormatSize(limit.ReadBps ?? 0)}/s"),
                (limit.WriteBps, $"write {Units.FormatSize(limit.WriteBps ?? 0)}/s"),
                (limit.ReadIops, $"{limit.ReadIops} read IOPS"),
                (limit.WriteIops, $"{limit.WriteIops} write IOPS"),
            }
            .Where(r => r.Rate is not null)
            .Select(r => r.Text);
        return $"`{limit.Device}`: {string.Join(", ", rates)}";
    }
}
