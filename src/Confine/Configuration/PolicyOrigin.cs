namespace Confine.Configuration;

/// <summary>Which layer of a policy gave a value.</summary>
internal enum PolicyOriginKind
{
    Level,
    File,
    Flag,
}

/// <summary>
/// Where one value of an effective policy came from: its level, a line of a policy file, or a flag.
/// Written <c>level:balanced</c>, <c>file:policy.yaml:12</c>, <c>flag:--memory</c>.
/// </summary>
internal readonly record struct PolicyOrigin(PolicyOriginKind Kind, string Name, int Line = 0, int Column = 0)
{
    public static PolicyOrigin FromLevel(IsolationLevel level) => new(PolicyOriginKind.Level, IsolationLevels.Name(level));

    public static PolicyOrigin FromFlag(string flag) => new(PolicyOriginKind.Flag, flag);

    public static PolicyOrigin FromFile(PolicyNode node) => new(PolicyOriginKind.File, node.File, node.Line, node.Column);

    public override string ToString() => Kind switch
    {
        PolicyOriginKind.Level => $"level:{Name}",
        PolicyOriginKind.File => $"file:{Name}:{Line}",
        _ => $"flag:{Name}",
    };
}
