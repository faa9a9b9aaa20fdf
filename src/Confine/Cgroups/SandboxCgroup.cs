using Confine.Native;

namespace Confine.Cgroups;

/// <summary>
/// The cgroup of one sandbox: a directory in each hierarchy it needs, named
/// <c>confine-OWNERPID-OWNERSTART-NAME</c>, created beneath Confine's own cgroup (or beneath the
/// policy's cgroup parent), with the policy's limits written. The sandbox's init joins it before
/// the command exists (<see cref="TasksFiles"/>, <see cref="PidJoinFiles"/>), so everything the
/// command does is limited and counted. <see cref="Dispose"/> kills whatever is left and removes
/// the directories.
/// </summary>
/// <remarks>
/// The files are split by concern: creation and validation (<c>SandboxCgroup.Create.cs</c>),
/// limits (<c>.Limits.cs</c>), accounting (<c>.Usage.cs</c>), killing and removal
/// (<c>.Kill.cs</c>), and cleanup of cgroups left by dead owners (<c>.Stale.cs</c>).
/// </remarks>
internal sealed partial class SandboxCgroup : IDisposable
{
    private readonly CgroupHost _host;
    private readonly List<Member> _members = [];
    private readonly Member?[] _byController = new Member?[CgroupControllerNames.All.Length];
    private readonly List<string> _unenforced;
    private readonly List<string> _leftovers = [];
    private bool _disposed;

    /// <summary>The sandbox's directory in one hierarchy.</summary>
    /// <param name="Hierarchy">The hierarchy.</param>
    /// <param name="Directory">The sandbox's cgroup directory in it.</param>
    private sealed record Member(CgroupHierarchy Hierarchy, string Directory)
    {
        public CgroupVersion Version => Hierarchy.Version;

        public string ProcsFile => Path.Join(Directory, "cgroup.procs");

        public string File(string name) => Path.Join(Directory, name);
    }

    private SandboxCgroup(CgroupHost host, CgroupName name, List<string> unenforced)
    {
        _host = host;
        Name = name.ToString();
        _unenforced = unenforced;
    }

    /// <summary>The directory name of the sandbox's cgroup in every hierarchy.</summary>
    public string Name { get; }

    /// <summary>The sandbox's cgroup directories, one per hierarchy joined.</summary>
    public IReadOnlyList<string> Directories => [.. _members.Select(m => m.Directory)];

    /// <summary>
    /// The <c>cgroup.procs</c> files of the sandbox, one per hierarchy. Empty when the host gave no
    /// cgroup at all.
    /// </summary>
    public IReadOnlyList<string> ProcsFiles => [.. _members.Select(m => m.ProcsFile)];

    /// <summary>
    /// The <c>tasks</c> files of the sandbox's v1 hierarchies. The sandbox's init joins these itself
    /// by writing 0, which moves only the writing thread and so spares the kernel's global
    /// threadgroup lock: see <c>join_cgroups</c> in the helper.
    /// </summary>
    public IReadOnlyList<string> TasksFiles => FilesOf(CgroupVersion.V1);

    /// <summary>
    /// The <c>cgroup.procs</c> files of the sandbox's v2 hierarchy (at most one), into which the
    /// init's pid must be written before the command runs: v2 has no way for a task to join alone
    /// that a process in a domain cgroup could use.
    /// </summary>
    public IReadOnlyList<string> PidJoinFiles => FilesOf(CgroupVersion.V2);

    /// <summary>
    /// The <c>tasks</c> files of the v1 members, or the <c>cgroup.procs</c> files of the v2 one. A
    /// plain loop: a LINQ chain (Where, then Select) here is a generic virtual call that NativeAOT
    /// resolves on its first use by starting its type loader, a measurable part of a command-line run.
    /// </summary>
    private List<string> FilesOf(CgroupVersion version)
    {
        var files = new List<string>(_members.Count);
        foreach (Member member in _members)
        {
            if (member.Version == version)
            {
                files.Add(version == CgroupVersion.V1 ? member.File("tasks") : member.ProcsFile);
            }
        }

        return files;
    }

    /// <summary>
    /// Limits the policy asked for that this host could not enforce, each as
    /// <c>policy-key: reason</c>; only non-empty when the policy allowed unenforced limits (or for a
    /// swap limit the policy did not ask for but implied).
    /// </summary>
    public IReadOnlyList<string> Unenforced => _unenforced;

    /// <summary>Directories <see cref="Dispose"/> could not remove (a task that would not die).</summary>
    public IReadOnlyList<string> Leftovers => _leftovers;

    /// <summary>The sandbox's directory for <paramref name="controller"/>, or null when it has none.</summary>
    public string? DirectoryOf(CgroupController controller) => _byController[(int)controller]?.Directory;

    /// <summary>The cgroup version that serves <paramref name="controller"/> for this sandbox, or null.</summary>
    public CgroupVersion? VersionOf(CgroupController controller) => _byController[(int)controller]?.Version;

    private Member? Of(CgroupController controller) => _byController[(int)controller];

    private void AddMember(CgroupHierarchy hierarchy, string directory, IEnumerable<CgroupController> controllers)
    {
        Member member = _members.FirstOrDefault(m => m.Directory == directory) ?? new Member(hierarchy, directory);
        if (!_members.Contains(member))
        {
            _members.Add(member);
        }

        foreach (CgroupController controller in controllers)
        {
            _byController[(int)controller] = member;
        }
    }

    /// <summary>Kills every task left in the sandbox's cgroups, then removes the directories. Never throws.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        CloseUsageFiles();
        if (TryRemoveEmpty())
        {
            return;
        }

        if (!IsEmpty())
        {
            KillAll();
        }

        foreach (Member member in RemovalOrder())
        {
            if (!RemoveTree(member.Directory))
            {
                _leftovers.Add(member.Directory);
            }
        }
    }

    /// <summary>
    /// Removes the directories with one rmdir each, which is all a sandbox that ended normally needs:
    /// the kernel refuses (EBUSY) to remove a cgroup that still has tasks or children, so a success
    /// proves it empty without reading its task lists first. False when any is left for the careful
    /// path (kill, wait, retry) to deal with.
    /// </summary>
    private bool TryRemoveEmpty()
    {
        foreach (Member member in RemovalOrder())
        {
            if (CgroupSyscalls.Rmdir(member.Directory) is not (Interop.Error.None or Interop.Error.ENOENT))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The freezer goes last: if a task survived the kill, its cgroup stays frozen-capable.</summary>
    private IEnumerable<Member> RemovalOrder() =>
        _members.OrderBy(m => ReferenceEquals(m, Of(CgroupController.Freezer)));

    /// <inheritdoc />
    public override string ToString() => $"{Name} ({string.Join(", ", Directories)})";
}
