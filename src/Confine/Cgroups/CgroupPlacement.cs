namespace Confine.Cgroups;

/// <summary>
/// Where a sandbox's cgroup for one controller would go, and whether Confine can put it there:
/// the hierarchy that carries the controller, the parent cgroup, and, when it cannot, why and
/// what would fix it.
/// </summary>
internal sealed record CgroupPlacement
{
    /// <summary>The controller placed.</summary>
    public required CgroupController Controller { get; init; }

    /// <summary>The hierarchy that carries the controller; null when no mount does.</summary>
    public CgroupHierarchy? Hierarchy { get; init; }

    /// <summary>The parent cgroup as a path in the hierarchy (Confine's own unless a parent was given).</summary>
    public string? ParentPath { get; init; }

    /// <summary>The parent cgroup's directory; null when the mount does not show it.</summary>
    public string? ParentDirectory { get; init; }

    /// <summary>Whether Confine can create a child of the parent that has this controller.</summary>
    public bool CanCreateChild { get; init; }

    /// <summary>
    /// On cgroup v2, whether the controller must first be added to the parent's
    /// <c>cgroup.subtree_control</c> (it is available there but not yet enabled).
    /// </summary>
    public bool NeedsEnabling { get; init; }

    /// <summary>Why the child cannot be created, when it cannot.</summary>
    public string? Problem { get; init; }

    /// <summary>What would let Confine create it, when it cannot.</summary>
    public string? Fix { get; init; }

    /// <summary>The cgroup interface of the hierarchy, when there is one.</summary>
    public CgroupVersion? Version => Hierarchy?.Version;

    /// <summary>Where the hierarchy is mounted, when there is one.</summary>
    public string? MountPoint => Hierarchy?.MountPoint;

    /// <summary>The controller's name as this host's kernel spells it (<c>blkio</c> or <c>io</c>, ...).</summary>
    public string Name => CgroupControllerNames.DisplayName(Controller, Hierarchy?.Version ?? CgroupVersion.V1);

    /// <inheritdoc />
    public override string ToString() =>
        CanCreateChild
            ? $"{Name}: cgroup v{(int)Hierarchy!.Version} under {ParentDirectory}"
                + (NeedsEnabling ? " (to be enabled in its subtree_control)" : "")
            : $"{Name}: unavailable, {Problem}; {Fix}";
}
