using System.Collections.Immutable;
using Confine.Native;

namespace Confine.Host;

/// <summary>
/// Finds Confine's own cgroups from /proc/self/cgroup and the mount table, and tries for real
/// whether a sandbox cgroup could be made beneath each: a uniquely named child is created and
/// removed at once. Nothing above Confine's own cgroups is touched. This is a self-contained probe
/// for <c>confine check</c>; the cgroup backend that enforces limits finds its cgroups on its own.
/// </summary>
internal static class CgroupProbe
{
    /// <summary>The v1 controllers Confine uses (the freezer for killing a whole sandbox), in the order reported.</summary>
    private static readonly string[] s_v1Controllers = ["memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "freezer"];

    /// <summary>The v2 controllers; CPU accounting, freezing and killing are in v2's core.</summary>
    private static readonly string[] s_v2Controllers = ["memory", "pids", "cpu", "cpuset", "io"];

    /// <summary>A cgroup filesystem mount: its type, mount point, the root it shows, and its controllers.</summary>
    internal sealed record CgroupMount(bool Unified, string MountPoint, string Root, ImmutableArray<string> Controllers);

    public static CgroupFacts Probe(bool root)
    {
        List<CgroupMount> mounts = ReadMounts(File.ReadAllLines("/proc/self/mountinfo"));
        Dictionary<string, string> paths = ReadOwnPaths(File.ReadAllLines("/proc/self/cgroup"));
        bool swapDevices = File.ReadAllLines("/proc/swaps").Length > 1;

        bool anyV1 = mounts.Any(m => !m.Unified && m.Controllers.Any(c => s_v1Controllers.Contains(c)));
        CgroupMount? unified = mounts.FirstOrDefault(m => m.Unified);
        string version = anyV1 ? (unified is null ? "v1" : "hybrid") : unified is null ? "none" : "v2";

        var trials = new Dictionary<string, Trial>(StringComparer.Ordinal);
        var controllers = ImmutableArray.CreateBuilder<ControllerFacts>();
        bool? swapAccounting = null;
        if (anyV1)
        {
            foreach (string name in s_v1Controllers)
            {
                CgroupMount? mount = mounts.FirstOrDefault(m => !m.Unified && m.Controllers.Contains(name));
                if (mount is null)
                {
                    controllers.Add(new ControllerFacts(name, false, null, false,
                        $"no cgroup v1 hierarchy has the {name} controller",
                        $"mount one: mount -t cgroup -o {name} cgroup /sys/fs/cgroup/{name}"));
                    continue;
                }

                string key = string.Join(',', mount.Controllers.Order(StringComparer.Ordinal));
                string? directory = OwnDirectory(mount, paths.GetValueOrDefault(key));
                controllers.Add(V1Controller(name, directory, trials, root));
                if (name == "memory" && directory is not null)
                {
                    swapAccounting = File.Exists(Path.Combine(directory, "memory.memsw.limit_in_bytes"));
                }
            }
        }
        else if (unified is not null)
        {
            string? directory = OwnDirectory(unified, paths.GetValueOrDefault(""));
            foreach (string name in s_v2Controllers)
            {
                controllers.Add(V2Controller(name, directory, trials, root));
            }

            swapAccounting = directory is not null && trials.TryGetValue(directory, out Trial trial) ? trial.SwapFile : null;
        }

        return new CgroupFacts(version, controllers.ToImmutable(), swapAccounting, swapDevices);
    }

    private static ControllerFacts V1Controller(string name, string? directory, Dictionary<string, Trial> trials, bool root)
    {
        if (directory is null)
        {
            return new ControllerFacts(name, true, null, false,
                "Confine's own cgroup in this hierarchy is outside the mounted part (a cgroup namespace or a container hides it)",
                HiddenFix);
        }

        Trial trial = TryChild(directory, trials, swapFile: "memory.memsw.limit_in_bytes");
        return trial.Problem is null
            ? new ControllerFacts(name, true, directory, true, null, null)
            : new ControllerFacts(name, true, directory, false, trial.Problem, WriteFix(root, unified: false));
    }

    private static ControllerFacts V2Controller(string name, string? directory, Dictionary<string, Trial> trials, bool root)
    {
        if (directory is null)
        {
            return new ControllerFacts(name, true, null, false,
                "Confine's own cgroup is outside the mounted cgroup2 tree (a cgroup namespace or a container hides it)",
                HiddenFix);
        }

        string[] available = ReadWords(Path.Combine(directory, "cgroup.controllers"));
        string[] delegated = ReadWords(Path.Combine(directory, "cgroup.subtree_control"));
        if (!available.Contains(name))
        {
            string parent = Path.GetDirectoryName(directory) ?? directory;
            return new ControllerFacts(name, true, directory, false,
                $"the {name} controller is not given to Confine's cgroup",
                $"enable it in the cgroup above: echo +{name} > {parent}/cgroup.subtree_control (systemd: Delegate=yes on Confine's unit)");
        }

        Trial trial = TryChild(directory, trials, swapFile: "memory.swap.max");
        if (trial.Problem is not null)
        {
            return new ControllerFacts(name, true, directory, false, trial.Problem, WriteFix(root, unified: true));
        }

        if (!delegated.Contains(name))
        {
            // cgroup v2 gives a child only the controllers in its parent's subtree_control, and a cgroup
            // that holds processes (other than the root) cannot enable any for its children. This is
            // reported as unusable even where the cgroup backend could move Confine into a leaf of
            // its own and enable it: the probe does not try that, so it may be too pessimistic.
            return new ControllerFacts(name, true, directory, false,
                $"the {name} controller is available but not enabled for cgroups beneath Confine's",
                "run Confine in a cgroup of its own with every controller delegated (systemd: Delegate=yes), or " +
                $"echo +{name} > {directory}/cgroup.subtree_control when that cgroup holds no processes");
        }

        return new ControllerFacts(name, true, directory, true, null, null);
    }

    private const string HiddenFix =
        "run Confine where its own cgroup is visible: on the host, or in a container with a private cgroup namespace " +
        "(Docker: --cgroupns=private)";

    private static string WriteFix(bool root, bool unified) => (root, unified) switch
    {
        (true, _) => "the cgroup tree is read-only to Confine (a container usually mounts it so): give the container " +
            "a writable cgroup of its own (cgroup v2 with Docker's --cgroupns=private, or a privileged container), or run " +
            "Confine on the host",
        (false, false) => "cgroup v1 cannot be safely delegated to an ordinary user: run Confine as root (the sandbox " +
            "still runs as an unprivileged mapped id), or boot with systemd.unified_cgroup_hierarchy=1 and use a delegated " +
            "cgroup v2",
        (false, true) => "run Confine in a cgroup delegated to its user: systemd-run --user --scope -p Delegate=yes " +
            "confine ..., or a service with Delegate=yes (docs/deployment.md)",
    };

    /// <summary>What creating a child cgroup under a directory showed; tried once per directory.</summary>
    private readonly record struct Trial(string? Problem, bool? SwapFile);

    private static Trial TryChild(string directory, Dictionary<string, Trial> trials, string swapFile)
    {
        if (trials.TryGetValue(directory, out Trial known))
        {
            return known;
        }

        string child = Path.Combine(directory, $"confine-check-{Environment.ProcessId}-{Random.Shared.Next():x}");
        Trial trial;
        try
        {
            Directory.CreateDirectory(child);
            try
            {
                trial = new Trial(null, File.Exists(Path.Combine(child, swapFile)));
            }
            finally
            {
                Directory.Delete(child, recursive: false);
            }
        }
        catch (UnauthorizedAccessException)
        {
            trial = new Trial($"cannot create a cgroup in {directory} (permission denied to uid {Native.Interop.geteuid()})", null);
        }
        catch (IOException e)
        {
            trial = new Trial($"cannot create a cgroup in {directory}: {e.Message}", null);
        }

        trials[directory] = trial;
        return trial;
    }

    /// <summary>Confine's own cgroup directory in a mount, when the mount shows it.</summary>
    internal static string? OwnDirectory(CgroupMount mount, string? ownPath)
    {
        if (ownPath is null)
        {
            return null;
        }

        string root = mount.Root.TrimEnd('/');
        if (ownPath != root && !ownPath.StartsWith(root + "/", StringComparison.Ordinal))
        {
            return null;
        }

        return (mount.MountPoint.TrimEnd('/') + ownPath[root.Length..]).TrimEnd('/') is { Length: > 0 } dir ? dir : "/";
    }

    /// <summary>The cgroup mounts of a mountinfo table.</summary>
    internal static List<CgroupMount> ReadMounts(IEnumerable<string> mountinfo)
    {
        var mounts = new List<CgroupMount>();
        foreach (string line in mountinfo)
        {
            int separator = line.IndexOf(" - ", StringComparison.Ordinal);
            if (separator < 0)
            {
                continue;
            }

            string[] left = line[..separator].Split(' ');
            string[] right = line[(separator + 3)..].Split(' ');
            if (left.Length < 5 || right.Length < 3 || right[0] is not ("cgroup" or "cgroup2"))
            {
                continue;
            }

            bool unified = right[0] == "cgroup2";
            ImmutableArray<string> controllers = unified
                ? []
                : [.. right[2].Split(',').Where(o => o is not ("rw" or "ro") && !o.Contains('='))];
            mounts.Add(new CgroupMount(unified, MountInfo.Unescape(left[4]), MountInfo.Unescape(left[3]), controllers));
        }

        return mounts;
    }

    /// <summary>/proc/self/cgroup as controller list (<c>cpu,cpuacct</c>; empty for v2) to path.</summary>
    internal static Dictionary<string, string> ReadOwnPaths(IEnumerable<string> lines)
    {
        var paths = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in lines)
        {
            string[] parts = line.Split(':', 3);
            if (parts.Length == 3)
            {
                // A v1 line may list its controllers in another order than the mount options do.
                IEnumerable<string> controllers = parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries)
                    .Where(c => !c.Contains('='))
                    .Order(StringComparer.Ordinal);
                string key = string.Join(',', controllers);
                if (key.Length > 0 || parts[1].Length == 0)
                {
                    // A named hierarchy without controllers (name=systemd) is not v2's "0::" line.
                    paths.TryAdd(key, parts[2]);
                }
            }
        }

        return paths;
    }

    private static string[] ReadWords(string path)
    {
        try
        {
            return File.ReadAllText(path).Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }
}
