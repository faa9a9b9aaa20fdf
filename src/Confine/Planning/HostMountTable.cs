using Confine.Native;

namespace Confine.Planning;

/// <summary>The mount points of Confine's own mount namespace, which the helper's namespace starts as a copy of.</summary>
internal static class HostMountTable
{
    public static IReadOnlyList<string> MountPoints()
    {
        List<MountInfo.Entry> mounts = MountInfo.Read();
        var points = new string[mounts.Count];
        for (int i = 0; i < points.Length; i++)
        {
            points[i] = mounts[i].MountPoint;
        }

        return points;
    }
}
