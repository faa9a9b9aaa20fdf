namespace Confine;

/// <summary>A policy value that is malformed, impossible or contradictory.</summary>
public sealed class PolicyException : Exception
{
    /// <summary>Creates the error for the policy key at <paramref name="path"/>.</summary>
    public PolicyException(string path, string reason)
        : base($"{path}: {reason}")
    {
        Path = path;
        Reason = reason;
    }

    /// <summary>
    /// Creates the error for a key written at <paramref name="line"/>:<paramref name="column"/> of a policy
    /// file; an empty <paramref name="path"/> means the file as a whole (it is not valid JSON or YAML),
    /// and a line of 0 that the place is not known.
    /// </summary>
    public PolicyException(string path, string reason, string file, int line, int column)
        : base(Located(path, reason, file, line, column))
    {
        Path = path;
        Reason = reason;
        File = file;
        Line = line > 0 ? line : null;
        Column = line > 0 ? column : null;
    }

    /// <summary>The policy key that is wrong, as a dotted path (<c>resources.memory</c>).</summary>
    public string Path { get; }

    /// <summary>Why it is wrong, in words that name the fix.</summary>
    public string Reason { get; }

    /// <summary>The policy file the key was written in, when it came from one.</summary>
    public string? File { get; }

    /// <summary>The 1-based line of the key in <see cref="File"/>, when known.</summary>
    public int? Line { get; }

    /// <summary>The 1-based column of the key in <see cref="File"/>, when known.</summary>
    public int? Column { get; }

    private static string Located(string path, string reason, string file, int line, int column)
    {
        string where = line > 0 ? $"{file}:{line}:{column}" : file;
        return path.Length > 0 ? $"{where}: {path}: {reason}" : $"{where}: {reason}";
    }
}
