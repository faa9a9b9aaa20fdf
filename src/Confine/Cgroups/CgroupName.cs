using System.Globalization;
using Confine.Native;

namespace Confine.Cgroups;

/// <summary>
/// The directory name of a sandbox's cgroup, <c>confine-OWNERPID-OWNERSTART-NAME</c>. It records
/// the process that created it so that a later run can tell a cgroup left behind by a dead owner
/// from one still in use. The owner's start time (field 22 of <c>/proc/PID/stat</c>) is part of
/// the name because pids are reused: with <c>pid_max</c> at 32768, a busy host wraps in minutes.
/// </summary>
internal readonly record struct CgroupName(int OwnerPid, ulong OwnerStartTime, string Name)
{
    /// <summary>The prefix of every cgroup Confine creates.</summary>
    public const string Prefix = "confine-";

    private static readonly Lazy<ulong> s_selfStartTime = new(() =>
        ReadStartTime("/proc/self/stat")
        ?? throw new IOException("cannot read this process's start time from /proc/self/stat"));

    /// <summary>The name of a new cgroup owned by this process.</summary>
    public static CgroupName ForThisProcess(string name)
    {
        if (!IsValidName(name))
        {
            throw new ArgumentException(
                $"'{name}' is not a valid sandbox cgroup name: use 1 to 64 letters, digits, '_', '.' or '-'",
                nameof(name));
        }

        return new CgroupName(Environment.ProcessId, s_selfStartTime.Value, name);
    }

    /// <summary>This process's start time in clock ticks since boot.</summary>
    public static ulong SelfStartTime => s_selfStartTime.Value;

    /// <summary>Reads a directory name written by <see cref="ToString"/>; false for anything else.</summary>
    public static bool TryParse(string directoryName, out CgroupName name)
    {
        name = default;
        if (!directoryName.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return false;
        }

        string[] parts = directoryName[Prefix.Length..].Split('-', 3);
        if (parts.Length != 3
            || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid <= 0
            || !ulong.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out ulong start)
            || !IsValidName(parts[2]))
        {
            return false;
        }

        name = new CgroupName(pid, start, parts[2]);
        return true;
    }

    /// <summary>
    /// Whether the owner still runs: <c>/proc/PID</c> exists, is not a zombie, and started at the
    /// recorded time (so it is the same process, not a later one given the same pid).
    /// </summary>
    public bool OwnerIsAlive()
    {
        string? stat = ReadStat($"/proc/{OwnerPid.ToString(CultureInfo.InvariantCulture)}/stat");
        if (stat is null || ParseState(stat) is 'Z' or 'X' or null)
        {
            return false;
        }

        return ParseStartTime(stat) == OwnerStartTime;
    }

    /// <inheritdoc />
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Prefix}{OwnerPid}-{OwnerStartTime}-{Name}");

    private static bool IsValidName(string name) =>
        name.Length is > 0 and <= 64 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '-');

    private static string? ReadStat(string path) => Posix.TryReadText(path);

    private static ulong? ReadStartTime(string path) => ReadStat(path) is { } stat ? ParseStartTime(stat) : null;

    /// <summary>
    /// The command name (field 2) is in parentheses and may itself hold spaces and parentheses, so
    /// the fields are counted from the last closing parenthesis: field 3 (state) comes first.
    /// </summary>
    internal static string[]? FieldsAfterName(string stat)
    {
        int close = stat.LastIndexOf(')');
        return close < 0 ? null : stat[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    private static char? ParseState(string stat) =>
        FieldsAfterName(stat) is [{ Length: > 0 } state, ..] ? state[0] : null;

    internal static ulong? ParseStartTime(string stat)
    {
        const int StartTimeField = 22;
        const int FirstFieldAfterName = 3;
        string[]? fields = FieldsAfterName(stat);
        int index = StartTimeField - FirstFieldAfterName;
        return fields is not null && fields.Length > index
            && ulong.TryParse(fields[index], NumberStyles.None, CultureInfo.InvariantCulture, out ulong start)
            ? start
            : null;
    }
}
