using System.Collections.Immutable;

namespace Confine.Cgroups;

/// <summary>
/// One mounted cgroup hierarchy and where Confine sits in it: a v1 hierarchy with its
/// controllers, or the v2 unified hierarchy.
/// </summary>
internal sealed class CgroupHierarchy
{
    /// <summary>Describes a hierarchy mounted at <paramref name="mountPoint"/>.</summary>
    /// <param name="version">The cgroup interface of the mount.</param>
    /// <param name="mountPoint">
    /// The mount point as a path Confine can open (the host's root path already in front).
    /// </param>
    /// <param name="mountRoot">
    /// The cgroup the mount shows at its top, as a path in the hierarchy (mountinfo's fourth field);
    /// <c>/</c> unless a subtree was bind-mounted.
    /// </param>
    /// <param name="controllers">
    /// Kernel names of the controllers: a v1 mount's options, or the v2 root's <c>cgroup.controllers</c>.
    /// </param>
    /// <param name="ownPath">Confine's own cgroup in this hierarchy, from <c>/proc/self/cgroup</c>.</param>
    /// <param name="readOnly">Whether the mount is read-only.</param>
    public CgroupHierarchy(
        CgroupVersion version, string mountPoint, string mountRoot, ImmutableArray<string> controllers,
        string ownPath, bool readOnly)
    {
        Version = version;
        MountPoint = mountPoint;
        MountRoot = mountRoot;
        Controllers = controllers;
        OwnPath = ownPath;
        ReadOnly = readOnly;
        OwnDirectory = DirectoryOf(ownPath);
    }

    /// <summary>The cgroup interface of the mount.</summary>
    public CgroupVersion Version { get; }

    /// <summary>Where the hierarchy is mounted, as a path Confine can open.</summary>
    public string MountPoint { get; }

    /// <summary>The cgroup shown at the top of the mount (<c>/</c> unless a subtree was bind-mounted).</summary>
    public string MountRoot { get; }

    /// <summary>Kernel names of the hierarchy's controllers.</summary>
    public ImmutableArray<string> Controllers { get; }

    /// <summary>Confine's own cgroup in this hierarchy, as a path in the hierarchy (<c>/user.slice/...</c>).</summary>
    public string OwnPath { get; }

    /// <summary>Confine's own cgroup as a directory, or null when the mount does not show it.</summary>
    public string? OwnDirectory { get; }

    /// <summary>Whether the mount is read-only.</summary>
    public bool ReadOnly { get; }

    /// <summary>
    /// The directory of the cgroup at <paramref name="cgroupPath"/> (a path in the hierarchy), or
    /// null when that cgroup lies outside what this mount shows.
    /// </summary>
    public string? DirectoryOf(string cgroupPath)
    {
        string root = MountRoot.TrimEnd('/');
        if (root.Length > 0)
        {
            if (!cgroupPath.StartsWith(root, StringComparison.Ordinal)
                || (cgroupPath.Length > root.Length && cgroupPath[root.Length] != '/'))
            {
                return null;
            }

            cgroupPath = cgroupPath[root.Length..];
        }

        string relative = cgroupPath.Trim('/');
        return relative.Length == 0 ? MountPoint : Path.Join(MountPoint, relative);
    }

    /// <summary>Whether the hierarchy carries the controller called <paramref name="kernelName"/>.</summary>
    public bool Has(string kernelName) => Controllers.Contains(kernelName);

    /// <inheritdoc />
    public override string ToString() =>
        $"cgroup v{(int)Version} at {MountPoint} ({string.Join(',', Controllers)}), own cgroup {OwnPath}";
}
