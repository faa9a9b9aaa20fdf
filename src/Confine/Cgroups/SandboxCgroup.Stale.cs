namespace Confine.Cgroups;

internal sealed partial class SandboxCgroup
{
    /// <summary>
    /// Removes sandbox cgroups whose owner has died (crashed, or was killed before it could clean
    /// up) from beneath Confine's own cgroups: kills their tasks and removes the directories. It
    /// costs one readdir per hierarchy when there is nothing to do, so the run path calls it
    /// before every run.
    /// </summary>
    /// <remarks>
    /// The owner is judged by pid and start time in Confine's pid namespace. An owner running in
    /// another pid namespace that shares these cgroups (a container sharing the host's cgroupfs)
    /// would look dead from here; Confine does not support that arrangement.
    /// </remarks>
    /// <returns>How many stale sandboxes were removed (one per sandbox, however many hierarchies it spanned).</returns>
    public static int RemoveStale(CgroupHost host) => RemoveStale(host, cgroupParent: null);

    /// <summary>
    /// As <see cref="RemoveStale(CgroupHost)"/>, beneath <paramref name="cgroupParent"/> instead (a
    /// policy's cgroup parent, relative to each hierarchy's root).
    /// </summary>
    public static int RemoveStale(CgroupHost host, string? cgroupParent)
    {
        ArgumentNullException.ThrowIfNull(host);
        string? parent = NormalizeParent(cgroupParent);

        var stale = new Dictionary<string, List<(CgroupHierarchy Hierarchy, string Directory)>>(StringComparer.Ordinal);
        var owners = new Dictionary<(int, ulong), bool>();
        foreach (CgroupHierarchy hierarchy in UsedHierarchies(host))
        {
            string? directory = hierarchy.DirectoryOf(parent ?? hierarchy.OwnPath);
            if (directory is null)
            {
                continue;
            }

            string[] entries;
            try
            {
                entries = Directory.GetDirectories(directory, CgroupName.Prefix + "*");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }

            foreach (string entry in entries)
            {
                string name = Path.GetFileName(entry);
                if (!CgroupName.TryParse(name, out CgroupName parsed))
                {
                    continue;
                }

                (int, ulong) owner = (parsed.OwnerPid, parsed.OwnerStartTime);
                if (!owners.TryGetValue(owner, out bool alive))
                {
                    owners[owner] = alive = parsed.OwnerIsAlive();
                }

                if (!alive)
                {
                    if (!stale.TryGetValue(name, out var directories))
                    {
                        stale[name] = directories = [];
                    }

                    directories.Add((hierarchy, entry));
                }
            }
        }

        foreach ((string name, List<(CgroupHierarchy Hierarchy, string Directory)> directories) in stale)
        {
            using SandboxCgroup sandbox = Attach(host, name, directories);
        }

        return stale.Count;
    }

    /// <summary>The distinct hierarchies that carry a controller Confine uses.</summary>
    private static IEnumerable<CgroupHierarchy> UsedHierarchies(CgroupHost host) =>
        CgroupControllerNames.All.Select(host.HierarchyOf).OfType<CgroupHierarchy>().Distinct();

    /// <summary>Takes over sandbox directories a dead owner left, so that they can be killed and removed.</summary>
    private static SandboxCgroup Attach(
        CgroupHost host, string name, List<(CgroupHierarchy Hierarchy, string Directory)> directories)
    {
        CgroupName.TryParse(name, out CgroupName parsed);
        var sandbox = new SandboxCgroup(host, parsed, []);
        foreach ((CgroupHierarchy hierarchy, string directory) in directories)
        {
            sandbox.AddMember(
                hierarchy, directory, CgroupControllerNames.All.Where(c => host.HierarchyOf(c) == hierarchy));
        }

        return sandbox;
    }
}
