using System.Diagnostics;
using System.Text;
using Confine.Tests.Support;

namespace Confine.Tests.Escape;

/// <summary>
/// What the escape probes target on the host, read before and after each sandbox run: the files they
/// try to write, the processes they might leave or kill, the cgroups a run might leave behind.
/// <see cref="Changes"/> says, in words, what differs.
/// </summary>
internal sealed record HostState
{
    /// <summary>Host files the probes aim at (and a sentinel outside every bind), with their content.</summary>
    public required IReadOnlyDictionary<string, string> Files { get; init; }

    /// <summary>Host processes that carry a probe's marker in their command line.</summary>
    public required IReadOnlyList<int> MarkedProcesses { get; init; }

    /// <summary>Processes in this test process's own memory cgroup.</summary>
    public required IReadOnlySet<int> OwnCgroupProcesses { get; init; }

    /// <summary>Sandbox cgroups of this test process beneath its own cgroups, in every hierarchy.</summary>
    public required IReadOnlySet<string> OwnSandboxCgroups { get; init; }

    /// <summary>Host processes that must outlive every run (the kill(-1) targets), and whether each is alive.</summary>
    public required IReadOnlyDictionary<int, bool> Survivors { get; init; }

    /// <summary>Reads the host's state now.</summary>
    public static HostState Read(IEnumerable<string> files, IEnumerable<string> markers, IEnumerable<Process> survivors) => new()
    {
        Files = files.ToDictionary(path => path, ReadFile),
        MarkedProcesses = [.. markers.SelectMany(m => SandboxTesting.HostProcessesWith(m)).Distinct().Order()],
        OwnCgroupProcesses = OwnMemoryCgroupProcesses(),
        OwnSandboxCgroups = OwnSandboxCgroupDirectories(),
        Survivors = survivors.ToDictionary(p => p.Id, p => !p.HasExited),
    };

    /// <summary>What is different in <paramref name="after"/>, or nothing.</summary>
    public static List<string> Changes(HostState before, HostState after)
    {
        var changes = new List<string>();
        foreach ((string path, string content) in before.Files)
        {
            if (after.Files[path] != content)
            {
                changes.Add($"{path} changed from '{content}' to '{after.Files[path]}'");
            }
        }

        changes.AddRange(after.MarkedProcesses.Select(pid => $"process {pid} ({Command(pid)}) of the sandbox is still running"));
        // The library keeps a sandbox prepared for the next run of a policy (idle confine-helper
        // processes, by design and documented); anything else new in the cgroup is left over.
        changes.AddRange(after.OwnCgroupProcesses.Except(before.OwnCgroupProcesses)
            .Where(pid => IsAlive(pid) && ShortName(pid) != "confine-helper")
            .Select(pid => $"process {pid} ({Command(pid)}) joined the test's own cgroup and is still running"));
        changes.AddRange(after.OwnSandboxCgroups.Except(before.OwnSandboxCgroups).Select(path => $"cgroup {path} was left behind"));
        changes.AddRange(after.Survivors.Where(s => !s.Value).Select(s => $"host process {s.Key} was killed"));
        return changes;
    }

    /// <summary>Every cgroup file named <paramref name="file"/> at the root of a v1 hierarchy (release_agent lives only there).</summary>
    public static IEnumerable<string> HierarchyRootFiles(string file) =>
        Directory.Exists("/sys/fs/cgroup")
            ? Directory.EnumerateDirectories("/sys/fs/cgroup").Select(d => Path.Combine(d, file)).Where(File.Exists)
            : [];

    private static string ReadFile(string path)
    {
        try
        {
            var info = new FileInfo(path);
            string content = File.ReadAllText(path);

            // A sentinel's identity and time too: rewritten with the same bytes is still a change.
            return path.StartsWith("/proc/", StringComparison.Ordinal) || path.StartsWith("/sys/", StringComparison.Ordinal)
                ? content
                : $"{content}|{info.LastWriteTimeUtc.Ticks}|{info.Length}";
        }
        catch (FileNotFoundException)
        {
            return "<missing>";
        }
        catch (DirectoryNotFoundException)
        {
            return "<missing>";
        }
        catch (UnauthorizedAccessException)
        {
            return "<unreadable>";
        }
    }

    private static HashSet<int> OwnMemoryCgroupProcesses()
    {
        string? path = OwnCgroups().Where(c => c.Controllers == "memory").Select(c => c.Directory).FirstOrDefault();
        if (path is null || !File.Exists(Path.Combine(path, "cgroup.procs")))
        {
            return [];
        }

        return [.. File.ReadAllLines(Path.Combine(path, "cgroup.procs")).Where(l => l.Length > 0).Select(int.Parse)];
    }

    private static HashSet<string> OwnSandboxCgroupDirectories()
    {
        // Confine names a sandbox's cgroup confine-OWNERPID-...; only this process's are ours to check.
        string prefix = $"confine-{Environment.ProcessId}-";
        var found = new HashSet<string>(StringComparer.Ordinal);
        foreach ((_, string directory) in OwnCgroups())
        {
            if (Directory.Exists(directory))
            {
                found.UnionWith(Directory.EnumerateDirectories(directory, prefix + "*"));
            }
        }

        return found;
    }

    /// <summary>This process's cgroup in each mounted hierarchy, from /proc/self/cgroup and the mount table.</summary>
    internal static IEnumerable<(string Controllers, string Directory)> OwnCgroups()
    {
        var mounts = new List<(string Point, string Type, string[] Options)>();
        foreach (string line in File.ReadLines("/proc/self/mountinfo"))
        {
            string[] halves = line.Split(" - ");
            string[] fields = halves[0].Split(' ');
            string[] super = halves[1].Split(' ');
            if (super[0] is "cgroup" or "cgroup2")
            {
                mounts.Add((fields[4], super[0], super.Length > 2 ? super[2].Split(',') : []));
            }
        }

        foreach (string line in File.ReadLines("/proc/self/cgroup"))
        {
            string[] parts = line.Split(':', 3);
            string controllers = parts[1];
            string[] wanted = controllers.Length == 0 ? [] : controllers.Split(',');
            (string Point, string Type, string[] Options)? mount = wanted.Length == 0
                ? mounts.FirstOrDefault(m => m.Type == "cgroup2")
                : mounts.FirstOrDefault(m => m.Type == "cgroup" && wanted.All(m.Options.Contains));
            if (mount is { Point: not null } found)
            {
                yield return (controllers, found.Point + (parts[2] == "/" ? "" : parts[2]));
            }
        }
    }

    private static bool IsAlive(int pid) => Directory.Exists($"/proc/{pid}");

    private static string ShortName(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/comm").Trim();
        }
        catch (IOException)
        {
            return "gone";
        }
    }

    private static string Command(int pid)
    {
        try
        {
            return Encoding.UTF8.GetString(File.ReadAllBytes($"/proc/{pid}/cmdline")).Replace('\0', ' ').Trim();
        }
        catch (IOException)
        {
            return "gone";
        }
    }
}
