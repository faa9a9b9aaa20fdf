using System.Collections.Immutable;
using System.Text;

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

    private readonly Dictionary<CgroupController, CgroupPlacement> _ownPlacements = [];

    /// <summary>Detects the layout of the running host.</summary>
    public static CgroupHost Detect() =>
        new(File.ReadAllText("/proc/self/mountinfo"), File.ReadAllText("/proc/self/cgroup"), "/");

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
        foreach (MountEntry mount in ParseMountInfo(mountInfo))
        {
            string mountPoint = rootPath == "/" ? mount.MountPoint : Path.Join(rootPath, mount.MountPoint);
            if (mount.FsType == "cgroup2" && v2Path is not null)
            {
                unifiedMounts.Add(new CgroupHierarchy(
                    CgroupVersion.V2, mountPoint, mount.Root, ReadV2Controllers(mountPoint), v2Path, mount.ReadOnly));
            }
            else if (mount.FsType == "cgroup")
            {
                ImmutableArray<string> controllers = [.. mount.SuperOptions.Where(IsV1ControllerOption)];
                string? ownPath = controllers
                    .Select(c => v1Paths.GetValueOrDefault(c))
                    .FirstOrDefault(p => p is not null);
                if (!controllers.IsEmpty && ownPath is not null)
                {
                    hierarchies.Add(new CgroupHierarchy(
                        CgroupVersion.V1, mountPoint, mount.Root, controllers, ownPath, mount.ReadOnly));
                }
            }
        }

        // A hierarchy mounted twice (a bind mount, or a container's view of it) counts once: the
        // first mount that shows Confine's cgroup wins, else the first mount.
        hierarchies = [.. hierarchies
            .GroupBy(h => string.Join(',', h.Controllers.Order(StringComparer.Ordinal)), StringComparer.Ordinal)
            .Select(g => g.FirstOrDefault(h => h.OwnDirectory is not null) ?? g.First())];
        Unified = unifiedMounts.FirstOrDefault(h => h.OwnDirectory is not null) ?? unifiedMounts.FirstOrDefault();
        if (Unified is not null)
        {
            hierarchies.Add(Unified);
        }

        Hierarchies = hierarchies;
        bool anyV1 = hierarchies.Any(h => h.Version == CgroupVersion.V1);
        Layout = (anyV1, Unified is not null) switch
        {
            (true, true) => CgroupLayout.Hybrid,
            (true, false) => CgroupLayout.V1,
            (false, true) => CgroupLayout.V2,
            _ => CgroupLayout.None,
        };

        foreach (CgroupController controller in CgroupControllerNames.All)
        {
            _ownPlacements[controller] = Place(controller, cgroupParent: null);
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
    /// cgroup there, as found at detection.
    /// </summary>
    public CgroupPlacement this[CgroupController controller] => _ownPlacements[controller];

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

            string? stat = CgroupFiles.TryReadText($"/proc/{pid.ToString(System.Globalization.CultureInfo.InvariantCulture)}/stat");
            int close = stat?.LastIndexOf(')') ?? -1;
            string[] fields = close < 0 ? [] : stat![(close + 2)..].Split(' ');
            if (fields.Length < 2 || !int.TryParse(fields[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out pid))
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

    /// <summary>One line of mountinfo, the fields the cgroup code needs.</summary>
    internal readonly record struct MountEntry(
        string Root, string MountPoint, string FsType, string[] SuperOptions, bool ReadOnly);

    /// <summary>
    /// Parses mountinfo (proc(5)): <c>id parent maj:min root mountpoint options [optional...] - fstype
    /// source superoptions</c>. The optional fields vary in number, hence the search for the lone dash.
    /// </summary>
    internal static List<MountEntry> ParseMountInfo(string text)
    {
        var entries = new List<MountEntry>();
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] fields = line.Split(' ');
            int dash = Array.IndexOf(fields, "-", 6);
            if (fields.Length < 6 || dash < 0 || fields.Length < dash + 4)
            {
                continue;
            }

            string[] mountOptions = fields[5].Split(',');
            string[] superOptions = fields[dash + 3].Split(',');
            bool readOnly = mountOptions.Contains("ro") || superOptions.Contains("ro");
            entries.Add(new MountEntry(
                Unescape(fields[3]), Unescape(fields[4]), fields[dash + 1], superOptions, readOnly));
        }

        return entries;
    }

    /// <summary>
    /// Undoes mountinfo's octal escapes (<c>\040</c> for a space, <c>\134</c> for a backslash). The
    /// escapes stand for bytes, so the work is done on the UTF-8 bytes of the field.
    /// </summary>
    internal static string Unescape(string field)
    {
        if (!field.Contains('\\'))
        {
            return field;
        }

        byte[] input = Encoding.UTF8.GetBytes(field);
        var output = new List<byte>(input.Length);
        for (int i = 0; i < input.Length; i++)
        {
            if (input[i] == '\\' && i + 3 < input.Length
                && IsOctal(input[i + 1]) && IsOctal(input[i + 2]) && IsOctal(input[i + 3]))
            {
                output.Add((byte)(((input[i + 1] - '0') << 6) | ((input[i + 2] - '0') << 3) | (input[i + 3] - '0')));
                i += 3;
            }
            else
            {
                output.Add(input[i]);
            }
        }

        return Encoding.UTF8.GetString([.. output]);

        static bool IsOctal(byte c) => c is >= (byte)'0' and <= (byte)'7';
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"cgroups: {Layout}; " + string.Join("; ", CgroupControllerNames.All.Select(c => this[c].ToString()));
}
