using System.Collections.Immutable;
using Confine.Native;

namespace Confine.Cgroups;

/// <summary>
/// The cgroup layout of this host as Confine sees it: which hierarchies are mounted (v1, v2 or
/// both), which carries each controller, where Confine's own cgroup is in each, and whether
/// Confine can create a child there. Detected at run time from <c>/proc/self/mountinfo</c> and
/// <c>/proc/self/cgroup</c>; nothing is configured.
/// </summary>
internal sealed class CgroupHost
{
    /// <summary>Names in a v1 mount's super options that are options, not controllers.</summary>
    private static readonly string[] s_v1NonControllerOptions =
        ["rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods", "nofavordynmods"];

    /// <summary>Detects the layout of the running host.</summary>
    /// <exception cref="IOException">/proc cannot be read; the message says why.</exception>
    public static CgroupHost Detect() => new(MountInfo.ReadText(), Posix.ReadText("/proc/self/cgroup"), "/");

    /// <summary>
    /// Builds the layout from the text of <c>/proc/self/mountinfo</c> and <c>/proc/self/cgroup</c>.
    /// Mount points are read beneath <paramref name="rootPath"/>, so that a test can lay out a
    /// fake cgroup tree in a temporary directory; on a real host it is <c>/</c>.
    /// </summary>
    public CgroupHost(string mountInfo, string procSelfCgroup, string rootPath)
    {
        ArgumentNullException.ThrowIfNull(mountInfo);
        ArgumentNullException.ThrowIfNull(procSelfCgroup);
        ArgumentException.ThrowIfNullOrEmpty(rootPath);

        RootPath = rootPath;
        (Dictionary<string, string> v1Paths, string? v2Path) = ParseProcSelfCgroup(procSelfCgroup);

        var hierarchies = new List<CgroupHierarchy>();
        var unifiedMounts = new List<CgroupHierarchy>();
        foreach (MountInfo.Entry mount in MountInfo.Parse(mountInfo))
        {
            string mountPoint = rootPath == "/" ? mount.MountPoint : Path.Join(rootPath, mount.MountPoint);
            if (mount.FsType == "cgroup2" && v2Path is not null)
            {
                unifiedMounts.Add(new CgroupHierarchy(
                    CgroupVersion.V2, mountPoint, mount.Root, ReadV2Controllers(mountPoint), v2Path, mount.ReadOnly));
            }
            else if (mount.FsType == "cgroup")
            {
                ImmutableArray<string>.Builder controllers = ImmutableArray.CreateBuilder<string>();
                string? ownPath = null;
                foreach (string option in mount.SuperOptions.Split(','))
                {
                    if (IsV1ControllerOption(option))
                    {
                        controllers.Add(option);
                        ownPath ??= v1Paths.GetValueOrDefault(option);
                    }
                }

                if (controllers.Count > 0 && ownPath is not null)
                {
                    AddOnce(hierarchies, new CgroupHierarchy(
                        CgroupVersion.V1, mountPoint, mount.Root, controllers.ToImmutable(), ownPath, mount.ReadOnly));
                }
            }
        }

        foreach (CgroupHierarchy mount in unifiedMounts)
        {
            if (Unified is null || (Unified.OwnDirectory is null && mount.OwnDirectory is not null))
            {
                Unified = mount;
            }
        }

        if (Unified is not null)
        {
            hierarchies.Add(Unified);
        }

        Hierarchies = hierarchies;
        bool anyV1 = hierarchies.Count > (Unified is null ? 0 : 1);
        Layout = (anyV1, Unified is not null) switch
        {
            (true, true) => CgroupLayout.Hybrid,
            (true, false) => CgroupLayout.V1,
            (false, true) => CgroupLayout.V2,
            _ => CgroupLayout.None,
        };
    }

    /// <summary>
    /// Adds a v1 hierarchy unless the same one (the same controllers) was already seen: a hierarchy
    /// mounted twice (a bind mount, or a container's view of it) counts once. The first mount that
    /// shows Confine's cgroup wins, else the first mount.
    /// </summary>
    private static void AddOnce(List<CgroupHierarchy> hierarchies, CgroupHierarchy hierarchy)
    {
        for (int i = 0; i < hierarchies.Count; i++)
        {
            if (SameControllers(hierarchies[i].Controllers, hierarchy.Controllers))
            {
                if (hierarchies[i].OwnDirectory is null && hierarchy.OwnDirectory is not null)
                {
                    hierarchies[i] = hierarchy;
                }

                return;
            }
        }

        hierarchies.Add(hierarchy);

        static bool SameControllers(ImmutableArray<string> a, ImmutableArray<string> b)
        {
            if (a.Length != b.Length)
            {
                return false;
            }

            foreach (string controller in a)
            {
                if (!b.Contains(controller))
                {
                    return false;
                }
            }

            return true;
        }
    }

    /// <summary>The directory the mount points were read beneath (<c>/</c> on a real host).</summary>
    public string RootPath { get; }

    /// <summary>How the host's cgroups are mounted.</summary>
    public CgroupLayout Layout { get; }

    /// <summary>Every mounted v1 hierarchy that carries a controller, and the unified one.</summary>
    public IReadOnlyList<CgroupHierarchy> Hierarchies { get; }

    /// <summary>The cgroup v2 hierarchy, when one is mounted (on a hybrid host it may have no controllers).</summary>
    public CgroupHierarchy? Unified { get; }

    /// <summary>
    /// Where <paramref name="controller"/> lives and whether Confine can create a child of its own
    /// cgroup there, worked out now (as <see cref="Place"/> with no cgroup parent).
    /// </summary>
    public CgroupPlacement this[CgroupController controller] => Place(controller, cgroupParent: null);

    /// <summary>The hierarchy that carries <paramref name="controller"/>, or null when none does.</summary>
    public CgroupHierarchy? HierarchyOf(CgroupController controller)
    {
        string v1Name = CgroupControllerNames.V1Name(controller);
        CgroupHierarchy? v1 = Hierarchies.FirstOrDefault(h => h.Version == CgroupVersion.V1 && h.Has(v1Name));
        if (v1 is not null)
        {
            return v1;
        }

        // The kernel binds a controller to one hierarchy at a time, so one used by v1 does not show
        // in v2's cgroup.controllers; the two v2 core features need no controller at all.
        string? v2Name = CgroupControllerNames.V2Name(controller);
        return Unified is not null && (v2Name is null || Unified.Has(v2Name)) ? Unified : null;
    }

    /// <summary>
    /// Works out, now, whether Confine can create a child with <paramref name="controller"/> beneath
    /// <paramref name="cgroupParent"/> (a cgroup path relative to the hierarchy's root), or beneath
    /// its own cgroup when that is null.
    /// </summary>
    public CgroupPlacement Place(CgroupController controller, string? cgroupParent)
    {
        CgroupHierarchy? hierarchy = HierarchyOf(controller);
        string v1Name = CgroupControllerNames.V1Name(controller);
        if (hierarchy is null)
        {
            return new CgroupPlacement
            {
                Controller = controller,
                Problem = $"no mounted cgroup hierarchy carries the {v1Name} controller",
                Fix = CgroupControllerNames.V2Name(controller) is string v2Name
                    ? $"mount cgroup v2 and enable +{v2Name} in cgroup.subtree_control, "
                        + $"or mount a cgroup v1 hierarchy with -o {v1Name}"
                    : $"mount cgroup v2 (its core provides this), or a cgroup v1 hierarchy with -o {v1Name}",
            };
        }

        string parentPath = cgroupParent ?? hierarchy.OwnPath;
        string? directory = hierarchy.DirectoryOf(parentPath);
        var placement = new CgroupPlacement
        {
            Controller = controller,
            Hierarchy = hierarchy,
            ParentPath = parentPath,
            ParentDirectory = directory,
        };
        string name = placement.Name;

        if (directory is null)
        {
            return placement with
            {
                Problem = $"cgroup {parentPath} lies outside the {name} mount at {hierarchy.MountPoint} "
                    + $"(which shows {hierarchy.MountRoot})",
                Fix = "mount the hierarchy so that it shows the cgroup, or choose a cgroup parent inside it",
            };
        }

        if (!Directory.Exists(directory))
        {
            return placement with
            {
                Problem = $"cgroup {parentPath} does not exist in the {name} hierarchy ({directory})",
                Fix = "create the cgroup parent first",
            };
        }

        if (hierarchy.ReadOnly || !CgroupSyscalls.CanWriteDirectory(directory))
        {
            return placement with
            {
                Problem = $"Confine may not create cgroups in {directory}",
                Fix = hierarchy.ReadOnly
                    ? $"mount {hierarchy.MountPoint} read-write"
                    : $"run as root or delegate the subtree: give this user {directory} and its cgroup.procs",
            };
        }

        if (hierarchy.Version == CgroupVersion.V1)
        {
            return placement with { CanCreateChild = true };
        }

        return PlaceV2(placement, hierarchy, directory);
    }

    /// <summary>
    /// The v2 rules: a child has a controller only when the parent lists it in
    /// <c>cgroup.subtree_control</c>, the parent can add it there only when its own parent gave it
    /// (<c>cgroup.controllers</c>), and only a cgroup without processes (or the root) may add it.
    /// </summary>
    private static CgroupPlacement PlaceV2(CgroupPlacement placement, CgroupHierarchy hierarchy, string directory)
    {
        string? v2Name = CgroupControllerNames.V2Name(placement.Controller);
        if (v2Name is null)
        {
            return placement with { CanCreateChild = true };
        }

        string subtreeControl = Path.Join(directory, "cgroup.subtree_control");
        if (ReadWords(subtreeControl).Contains(v2Name))
        {
            return placement with { CanCreateChild = true };
        }

        bool isRoot = directory == hierarchy.MountPoint && hierarchy.MountRoot == "/";
        if (!ReadWords(Path.Join(directory, "cgroup.controllers")).Contains(v2Name))
        {
            string? grandparent = isRoot ? null : Path.GetDirectoryName(directory);
            return placement with
            {
                Problem = $"the {v2Name} controller is not available in {directory}",
                Fix = grandparent is null
                    ? $"free the {v2Name} controller from cgroup v1 (no v1 hierarchy may mount it)"
                    : $"enable the {v2Name} controller: add +{v2Name} to {grandparent}/cgroup.subtree_control",
            };
        }

        // Confine alone in its own cgroup (a service given a delegated subtree) steps into a leaf of
        // it when the controller is enabled (SandboxCgroup.MoveSelfIntoLeaf); anyone else there
        // would keep the cgroup busy.
        string procs = Path.Join(directory, "cgroup.procs");
        if (!isRoot && CgroupFiles.HasPids(procs)
            && !(directory == hierarchy.OwnDirectory && HoldsOnlyThisProcessTree(procs)))
        {
            return placement with
            {
                Problem = $"{directory} holds processes, and cgroup v2 hands controllers only to children of "
                    + "a cgroup without processes",
                Fix = "set resources.cgroup_parent to an empty cgroup Confine may write, outside its own "
                    + "(as root, for example: mkdir /sys/fs/cgroup/confine and use /confine)",
            };
        }

        if (!CgroupSyscalls.CanWriteFile(subtreeControl))
        {
            return placement with
            {
                Problem = $"Confine may not write {subtreeControl}",
                Fix = $"run as root or delegate the subtree: add +{v2Name} to {subtreeControl} beforehand",
            };
        }

        return placement with { CanCreateChild = true, NeedsEnabling = true };
    }

    /// <summary>
    /// Whether every process in the cgroup is this one or descends from it: its helpers, the sandboxes
    /// being built (the helper spawns while the cgroup is made) and those prepared ahead.
    /// </summary>
    internal static bool HoldsOnlyThisProcessTree(string procsFile) => ProcessesIn(procsFile) is { } pids && pids.All(IsThisProcessOrDescendant);

    /// <summary>The pids listed in a <c>cgroup.procs</c> file; null when it cannot be read.</summary>
    internal static List<int>? ProcessesIn(string procsFile)
    {
        string? text = CgroupFiles.TryReadText(procsFile);
        if (text is null)
        {
            return null;
        }

        var pids = new List<int>();
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (int.TryParse(line, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid))
            {
                pids.Add(pid);
            }
        }

        return pids;
    }

    private static bool IsThisProcessOrDescendant(int pid)
    {
        // A few generations are enough: Confine, its helper, the sandbox's init.
        for (int generation = 0; generation < 4 && pid > 1; generation++)
        {
            if (pid == Environment.ProcessId)
            {
                return true;
            }

            // Field 4, the parent, is the second after the command name.
            string? stat = CgroupFiles.TryReadText($"/proc/{pid.ToString(System.Globalization.CultureInfo.InvariantCulture)}/stat");
            string[]? fields = stat is null ? null : CgroupName.FieldsAfterName(stat);
            if (fields is not { Length: >= 2 } || !int.TryParse(fields[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out pid))
            {
                return false;
            }
        }

        return pid == Environment.ProcessId;
    }

    private static HashSet<string> ReadWords(string path) =>
        [.. (CgroupFiles.TryReadText(path) ?? "").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)];

    private static ImmutableArray<string> ReadV2Controllers(string mountPoint) =>
        [.. (CgroupFiles.TryReadText(Path.Join(mountPoint, "cgroup.controllers")) ?? "")
            .Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)];

    private static bool IsV1ControllerOption(string option) =>
        !option.Contains('=') && !s_v1NonControllerOptions.Contains(option);

    /// <summary>
    /// Maps each v1 controller to Confine's cgroup path in its hierarchy, and finds the v2 path
    /// (the <c>0::</c> line). Each line is <c>hierarchy-id:controller-list:path</c>; the path may
    /// itself hold colons.
    /// </summary>
    internal static (Dictionary<string, string> V1Paths, string? V2Path) ParseProcSelfCgroup(string text)
    {
        var v1 = new Dictionary<string, string>(StringComparer.Ordinal);
        string? v2 = null;
        const StringSplitOptions Options = StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries;
        foreach (string line in text.Split('\n', Options))
        {
            string[] parts = line.Split(':', 3);
            if (parts.Length != 3)
            {
                continue;
            }

            if (parts[0] == "0" && parts[1].Length == 0)
            {
                v2 = parts[2];
                continue;
            }

            foreach (string controller in parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                v1[controller] = parts[2];
            }
        }

        return (v1, v2);
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"cgroups: {Layout}; " + string.Join("; ", CgroupControllerNames.All.Select(c => this[c].ToString()));
}
