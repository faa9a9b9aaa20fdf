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

    /// <summary>The policy key that is wrong, as a dotted path (<c>resources.memory</c>).</summary>
    public string Path { get; }

    /// <summary>Why it is wrong, in words that name the fix.</summary>
    public string Reason { get; }
}
