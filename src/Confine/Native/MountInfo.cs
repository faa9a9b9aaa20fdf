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
    /// <param name="SuperOptions">
    /// The file system's options, comma-separated (a v1 cgroup mount's controllers are among them).
    /// </param>
    /// <param name="ReadOnly">Whether the mount or its file system is read-only.</param>
    internal readonly record struct Entry(string Root, string MountPoint, string FsType, string SuperOptions, bool ReadOnly);

    /// <summary>The table as it is now.</summary>
    /// <exception cref="IOException">The table cannot be read (no /proc, no descriptor left, ...).</exception>
    public static List<Entry> Read() => Parse(ReadText());

    /// <summary>The table's text as it is now.</summary>
    /// <exception cref="IOException">The table cannot be read (no /proc, no descriptor left, ...).</exception>
    public static string ReadText() => Posix.ReadText("/proc/self/mountinfo");

    /// <summary>Parses the table's text; a line that is not a mount is skipped.</summary>
    /// <remarks>
    /// Fields are found as ranges of the text and only the four kept become strings: every run
    /// parses the table, and splitting each line into strings was most of what that allocated.
    /// </remarks>
    public static List<Entry> Parse(string text)
    {
        var entries = new List<Entry>();
        Span<Range> left = stackalloc Range[7];
        Span<Range> right = stackalloc Range[4];
        foreach (Range lineRange in text.AsSpan().Split('\n'))
        {
            ReadOnlySpan<char> line = text.AsSpan(lineRange);

            // Paths escape their spaces, so " - " can only be the separator before the file system's fields.
            int separator = line.IndexOf(" - ", StringComparison.Ordinal);
            if (separator < 0)
            {
                continue;
            }

            // id parent major:minor root mount-point options [optional...]: the last range takes the rest.
            ReadOnlySpan<char> mount = line[..separator];
            if (mount.Split(left, ' ') < 6)
            {
                continue;
            }

            // fstype source super-options
            ReadOnlySpan<char> filesystem = line[(separator + 3)..];
            if (filesystem.Split(right, ' ') < 3)
            {
                continue;
            }

            ReadOnlySpan<char> superOptions = filesystem[right[2]];
            bool readOnly = HasOption(mount[left[5]], "ro") || HasOption(superOptions, "ro");
            entries.Add(new Entry(
                Unescape(mount[left[3]].ToString()),
                Unescape(mount[left[4]].ToString()),
                filesystem[right[0]].ToString(),
                superOptions.ToString(),
                readOnly));
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

    /// <summary>Whether a comma-separated option list holds <paramref name="option"/>.</summary>
    internal static bool HasOption(ReadOnlySpan<char> options, string option)
    {
        foreach (Range part in options.Split(','))
        {
            if (options[part].SequenceEqual(option))
            {
                return true;
            }
        }

        return false;
    }
}
