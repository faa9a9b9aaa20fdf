using System.Globalization;
using System.Text;
using Confine.Native;
using Microsoft.Win32.SafeHandles;

namespace Confine.Cgroups;

/// <summary>
/// Reads and writes cgroup interface files with plain open/read/write, so that a sample every
/// 100 ms costs a few system calls per file and a failed write keeps its errno.
/// </summary>
internal static class CgroupFiles
{
    /// <summary>The whole file as text, or null when it cannot be read (a missing file is the usual reason).</summary>
    public static string? TryReadText(string path) => Posix.TryReadText(path);

    /// <summary>A file holding one number (or <c>max</c>, read as <see cref="long.MaxValue"/>).</summary>
    public static long? TryReadInt64(string path) => Int64Of(TryReadText(path));

    /// <summary>One key of a flat keyed file (<c>key value</c> per line), as in <c>memory.events</c>.</summary>
    public static long? TryReadKeyed(string path, string key) => KeyedOf(TryReadText(path), key);

    /// <summary>The number a one-number file's <paramref name="text"/> holds; null for no text.</summary>
    public static long? Int64Of(string? text) => text is null ? null : ParseValue(text.AsSpan().Trim());

    /// <summary>One key of a flat keyed file's <paramref name="text"/>; null for no text.</summary>
    public static long? KeyedOf(string? text, string key) => text is null ? null : FindKeyed(text, key);

    /// <summary>Writes <paramref name="value"/> in one write(2): the kernel parses one value per write.</summary>
    public static Interop.Error Write(string path, string value)
    {
        Interop.Error errno = CgroupSyscalls.Open(path, write: true, out SafeFileHandle handle);
        using (handle)
        {
            if (errno != Interop.Error.None)
            {
                return errno;
            }

            return CgroupSyscalls.Write(handle, Encoding.UTF8.GetBytes(value));
        }
    }

    /// <summary>The value of <paramref name="key"/> in flat keyed text, or null when the key is absent.</summary>
    public static long? FindKeyed(string text, string key)
    {
        foreach (ReadOnlySpan<char> line in text.AsSpan().EnumerateLines())
        {
            if (line.Length > key.Length && line.StartsWith(key, StringComparison.Ordinal) && line[key.Length] == ' ')
            {
                return ParseValue(line[(key.Length + 1)..].Trim());
            }
        }

        return null;
    }

    /// <summary>A number as the kernel prints it; <c>max</c> means no limit.</summary>
    public static long? ParseValue(ReadOnlySpan<char> text)
    {
        if (text.SequenceEqual("max"))
        {
            return long.MaxValue;
        }

        return long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value)
            ? value
            : null;
    }

    /// <summary>The pids listed in a <c>cgroup.procs</c> file; empty when it is missing.</summary>
    public static List<int> ReadPids(string procsFile)
    {
        var pids = new List<int>();
        string? text = TryReadText(procsFile);
        if (text is null)
        {
            return pids;
        }

        foreach (ReadOnlySpan<char> line in text.AsSpan().EnumerateLines())
        {
            if (int.TryParse(line, NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
            {
                pids.Add(pid);
            }
        }

        return pids;
    }

    /// <summary>Whether a <c>cgroup.procs</c> file lists any process; false when it cannot be read.</summary>
    public static bool HasPids(string procsFile)
    {
        string? text = TryReadText(procsFile);
        return text is not null && !text.AsSpan().Trim().IsEmpty;
    }
}
