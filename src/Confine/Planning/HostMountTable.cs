using System.Text;

namespace Confine.Planning;

/// <summary>The mount points of Confine's own mount namespace, which the helper's namespace starts as a copy of.</summary>
internal static class HostMountTable
{
    public static IReadOnlyList<string> MountPoints()
    {
        var points = new List<string>();
        foreach (string line in File.ReadLines("/proc/self/mountinfo"))
        {
            // Fields: id parent major:minor root mount-point options ...
            string[] fields = line.Split(' ', 6);
            if (fields.Length >= 5)
            {
                points.Add(Unescape(fields[4]));
            }
        }

        return points;
    }

    /// <summary>mountinfo writes space, tab, newline and backslash as three-digit octal escapes.</summary>
    private static string Unescape(string field)
    {
        if (!field.Contains('\\'))
        {
            return field;
        }

        var text = new StringBuilder(field.Length);
        for (int i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length
                && field.AsSpan(i + 1, 3).ToString().All(c => c is >= '0' and <= '7'))
            {
                text.Append((char)Convert.ToInt32(field.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
            {
                text.Append(field[i]);
            }
        }

        return text.ToString();
    }
}
