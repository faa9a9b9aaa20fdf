using System.Text;

namespace Confine.Native;

/// <summary>
/// The mount table of this process's mount namespace, <c>/proc/self/mountinfo</c> (proc(5)). Each
/// line is <c>id parent major:minor root mount-point options [optional...] - fstype source
/// super-options</c>; the optional fields vary in number, hence the search for the lone dash.
/// </summary>
internal static class MountInfo
{
    /// <summary>One mount: the fields Confine uses.</summary>
    /// <param name="Root">The path within its file system that the mount shows at its top.</param>
    /// <param name="MountPoint">Where it is mounted.</param>
    /// <param name="FsType">The file system type (<c>cgroup2</c>, <c>tmpfs</c>, ...).</param>
    /// <param name="SuperOptions">The file system's options (a v1 cgroup mount's controllers are among them).</param>
    /// <param name="ReadOnly">Whether the mount or its file system is read-only.</param>
    internal readonly record struct Entry(string Root, string MountPoint, string FsType, string[] SuperOptions, bool ReadOnly);

    /// <summary>The table as it is now.</summary>
    /// <exception cref="IOException">The table cannot be read (no /proc).</exception>
    public static List<Entry> Read() => Parse(ReadText());

    /// <summary>The table's text as it is now.</summary>
    /// <exception cref="IOException">The table cannot be read (no /proc).</exception>
    public static string ReadText() =>
        Posix.TryReadText("/proc/self/mountinfo") ?? throw new IOException("cannot read /proc/self/mountinfo: is /proc mounted?");

    /// <summary>Parses the table's text; a line that is not a mount is skipped.</summary>
    public static List<Entry> Parse(string text)
    {
        var entries = new List<Entry>();
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] fields = line.Split(' ');
            int dash = fields.Length > 6 ? Array.IndexOf(fields, "-", 6) : -1;
            if (dash < 0 || fields.Length < dash + 4)
            {
                continue;
            }

            string[] superOptions = fields[dash + 3].Split(',');
            bool readOnly = HasOption(fields[5], "ro") || Array.IndexOf(superOptions, "ro") >= 0;
            entries.Add(new Entry(Unescape(fields[3]), Unescape(fields[4]), fields[dash + 1], superOptions, readOnly));
        }

        return entries;
    }

    /// <summary>
    /// Undoes the table's octal escapes (<c>\040</c> for a space, <c>\134</c> for a backslash). The
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

    private static bool HasOption(string options, string option)
    {
        foreach (Range part in options.AsSpan().Split(','))
        {
            if (options.AsSpan()[part].SequenceEqual(option))
            {
                return true;
            }
        }

        return false;
    }
}
