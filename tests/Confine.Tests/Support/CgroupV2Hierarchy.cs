namespace Confine.Tests.Support;

/// <summary>
/// Where this process sits in the cgroup v2 (unified) hierarchy, read from
/// <c>/proc/self/mountinfo</c> and <c>/proc/self/cgroup</c>, so that tests can tell a host whose
/// controllers are on cgroup v2 from one (like this project's development host) whose controllers
/// are all on cgroup v1 and whose cgroup2 mount offers none of them.
/// </summary>
internal static class CgroupV2Hierarchy
{
    private static readonly Lazy<(string Point, string Root)?> _mount = new(FindMount);
    private static readonly Lazy<string?> _ownCgroup = new(FindOwnCgroup);

    /// <summary>The mount point of the cgroup2 filesystem, or null when none is mounted.</summary>
    public static string? MountPoint => _mount.Value?.Point;

    /// <summary>
    /// The directory of this process's own cgroup in the cgroup2 mount, or null when there is no
    /// cgroup2 mount or the process's cgroup lies outside it (a cgroup namespace rooted elsewhere).
    /// </summary>
    public static string? OwnCgroup => _ownCgroup.Value;

    /// <summary>
    /// Says why the process's own cgroup cannot be used with <paramref name="controllers"/>, or
    /// returns null when its <c>cgroup.controllers</c> lists every one of them.
    /// </summary>
    public static string? WhyUnavailable(IEnumerable<string> controllers)
    {
        const string Advice = "run the test in the cgroup v2 guest: scripts/cgroup-v2-vm/run.sh";
        if (MountPoint is null)
        {
            return $"no cgroup2 filesystem is mounted; {Advice}";
        }

        if (OwnCgroup is null)
        {
            return $"this process's cgroup is not visible under {MountPoint}; {Advice}";
        }

        string[] offered = File.ReadAllText(Path.Combine(OwnCgroup, "cgroup.controllers"))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        string[] missing = controllers.Where(c => !offered.Contains(c, StringComparer.Ordinal)).ToArray();
        if (missing.Length > 0)
        {
            return $"the cgroup v2 hierarchy at {MountPoint} offers this process no " +
                $"{string.Join(", ", missing)} controller (its controllers are on cgroup v1); {Advice}";
        }

        return null;
    }

    private static (string Point, string Root)? FindMount()
    {
        // mountinfo fields: id parent major:minor root mount-point options [optional...] - type ...
        foreach (string line in File.ReadLines("/proc/self/mountinfo"))
        {
            string[] fields = line.Split(' ');
            int separator = Array.IndexOf(fields, "-");
            if (separator > 4 && separator + 1 < fields.Length && fields[separator + 1] == "cgroup2")
            {
                return (Unescape(fields[4]), Unescape(fields[3]));
            }
        }

        return null;
    }

    private static string? FindOwnCgroup()
    {
        if (_mount.Value is not { } mount)
        {
            return null;
        }

        (string point, string root) = mount;

        // On the unified hierarchy a process has exactly one line, "0::/path".
        string? line = File.ReadLines("/proc/self/cgroup")
            .FirstOrDefault(l => l.StartsWith("0::", StringComparison.Ordinal));
        if (line is null)
        {
            return null;
        }

        // The path is relative to the cgroup namespace's root (one that climbs out of it shows as
        // "/.."), and the mount may show only a subtree of the hierarchy, starting at its root.
        string path = line["0::".Length..];
        if (root != "/")
        {
            if (!path.StartsWith(root + "/", StringComparison.Ordinal) && path != root)
            {
                return null;
            }

            path = path[root.Length..];
        }

        if (path.StartsWith("/..", StringComparison.Ordinal))
        {
            return null;
        }

        string directory = Path.Join(point, path.TrimStart('/')).TrimEnd('/');
        return Directory.Exists(directory) ? directory : null;
    }

    // mountinfo writes space, tab, newline and backslash in paths as octal escapes (\040 ...).
    private static string Unescape(string field)
    {
        if (!field.Contains('\\'))
        {
            return field;
        }

        var result = new System.Text.StringBuilder(field.Length);
        for (int i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length)
            {
                result.Append((char)Convert.ToInt32(field.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
            {
                result.Append(field[i]);
            }
        }

        return result.ToString();
    }
}
