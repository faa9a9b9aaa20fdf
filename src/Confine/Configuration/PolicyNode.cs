using System.Globalization;

namespace Confine.Configuration;

/// <summary>The kinds of value a policy file can hold, the same for JSON and YAML.</summary>
internal enum PolicyNodeKind
{
    Map,
    List,
    String,
    Number,
    Bool,
    Null,
}

/// <summary>
/// One value of a policy file with the place it was written, so that every error can point at the
/// line to change. JSON and YAML are both read into this tree and interpreted by one reader, which
/// keeps their rules the same.
/// </summary>
internal sealed class PolicyNode
{
    private PolicyNode(PolicyNodeKind kind, string text, string file, int line, int column)
    {
        Kind = kind;
        Text = text;
        File = file;
        Line = line;
        Column = column;
    }

    public PolicyNodeKind Kind { get; }

    /// <summary>A scalar's text as written (a number's digits, a string's characters); empty otherwise.</summary>
    public string Text { get; }

    public string File { get; }

    public int Line { get; }

    public int Column { get; }

    /// <summary>A map's entries in the order written; keys are string nodes.</summary>
    public List<KeyValuePair<PolicyNode, PolicyNode>> Entries { get; } = [];

    public List<PolicyNode> Items { get; } = [];

    public bool IsNull => Kind == PolicyNodeKind.Null;

    public static PolicyNode Scalar(PolicyNodeKind kind, string text, string file, int line, int column) =>
        new(kind, text, file, line, column);

    public static PolicyNode Container(PolicyNodeKind kind, string file, int line, int column) => new(kind, "", file, line, column);

    /// <summary>An error about this node's value, located in its file.</summary>
    public PolicyException Error(string path, string reason) => new(path, reason, File, Line, Column);

    public string Describe() => Kind switch
    {
        PolicyNodeKind.Map => "a map",
        PolicyNodeKind.List => "a list",
        PolicyNodeKind.String => $"the string '{Text}'",
        PolicyNodeKind.Number => $"the number {Text}",
        PolicyNodeKind.Bool => Text,
        _ => "null",
    };

    public string AsString(string path)
    {
        if (Kind != PolicyNodeKind.String)
        {
            throw Error(path, $"expected a string, not {Describe()}");
        }

        return Text;
    }

    /// <summary>A string, or a number taken as its text (a CPU list <c>0</c>, a port in an environment variable).</summary>
    public string AsText(string path)
    {
        if (Kind is not (PolicyNodeKind.String or PolicyNodeKind.Number))
        {
            throw Error(path, $"expected a string, not {Describe()}");
        }

        return Text;
    }

    public bool AsBool(string path)
    {
        if (Kind != PolicyNodeKind.Bool)
        {
            throw Error(path, $"expected true or false, not {Describe()}");
        }

        return Text == "true";
    }

    public long AsInteger(string path)
    {
        if (Kind != PolicyNodeKind.Number
            || !long.TryParse(Text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
        {
            throw Error(path, $"expected a whole number, not {Describe()}");
        }

        return value;
    }

    public double AsNumber(string path)
    {
        if (Kind != PolicyNodeKind.Number
            || !double.TryParse(Text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value)
            || !double.IsFinite(value))
        {
            throw Error(path, $"expected a number, not {Describe()}");
        }

        return value;
    }

    /// <summary>A byte count: a whole number of bytes, or a string with a suffix (<c>"64m"</c>).</summary>
    public long AsSize(string path)
    {
        if (Kind == PolicyNodeKind.Number)
        {
            return AsInteger(path);
        }

        if (Kind != PolicyNodeKind.String)
        {
            throw Error(path, $"expected a size such as \"64m\" or a number of bytes, not {Describe()}");
        }

        return Located(path, () => Units.ParseSize(path, Text));
    }

    /// <summary>A duration: a number of seconds, or a string with units (<c>"1m30s"</c>).</summary>
    public TimeSpan AsDuration(string path)
    {
        if (Kind == PolicyNodeKind.Number)
        {
            return TimeSpan.FromSeconds(AsNumber(path));
        }

        if (Kind != PolicyNodeKind.String)
        {
            throw Error(path, $"expected a duration such as \"10s\" or a number of seconds, not {Describe()}");
        }

        return Located(path, () => Units.ParseDuration(path, Text));
    }

    /// <summary>Runs a parser that throws unlocated errors and gives them this node's place.</summary>
    public T Located<T>(string path, Func<T> parse)
    {
        try
        {
            return parse();
        }
        catch (PolicyException e) when (e.File is null)
        {
            throw Error(path, e.Reason);
        }
    }
}
