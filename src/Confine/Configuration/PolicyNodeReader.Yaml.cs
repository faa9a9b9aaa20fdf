using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace Confine.Configuration;

/// <summary>Reads policy files into <see cref="PolicyNode"/> trees.</summary>
internal static partial class PolicyNodeReader
{
    /// <summary>
    /// Reads a YAML policy from YamlDotNet's event stream. Only the parser is used: its reflection
    /// serializer is not NativeAOT-safe, and a serializer would hide the positions errors need.
    /// Plain scalars are typed by YAML 1.2's core schema, so <c>yes</c> is a string, not true.
    /// Anchors and aliases work; merge keys (<c>&lt;&lt;: *base</c>) are not part of YAML 1.2 and
    /// are read as an ordinary key, which the policy reader then refuses as unknown.
    /// </summary>
    public static PolicyNode ReadYaml(string text, string file)
    {
        var parser = new Parser(new StringReader(text));
        var anchors = new Dictionary<string, PolicyNode>(StringComparer.Ordinal);
        try
        {
            parser.Consume<StreamStart>();
            if (parser.TryConsume<StreamEnd>(out _))
            {
                // An empty file (or one holding only comments) changes nothing.
                return PolicyNode.Container(PolicyNodeKind.Map, file, 1, 1);
            }

            parser.Consume<DocumentStart>();
            PolicyNode root = ReadYamlValue(parser, anchors, file);
            parser.Consume<DocumentEnd>();
            if (parser.Current is DocumentStart second)
            {
                throw new PolicyException(
                    "", "more than one YAML document in the file", file, (int)second.Start.Line, (int)second.Start.Column);
            }

            parser.Consume<StreamEnd>();
            return root;
        }
        catch (YamlException e)
        {
            throw new PolicyException(
                "", $"not valid YAML: {WithoutMark(e.Message)}", file, (int)e.Start.Line, (int)e.Start.Column);
        }
        catch (InvalidOperationException)
        {
            // YamlDotNet's scanner throws this on some malformed input (a flow sequence left open across
            // lines) instead of a YamlException; the place is where parsing stopped.
            ParsingEvent? last = parser.Current;
            throw new PolicyException(
                "", "not valid YAML: a [ or { is not closed", file, (int)(last?.Start.Line ?? 1), (int)(last?.Start.Column ?? 1));
        }
    }

    private static PolicyNode ReadYamlValue(IParser parser, Dictionary<string, PolicyNode> anchors, string file)
    {
        ParsingEvent next = parser.Current ?? throw new YamlException("the document ends early");
        int line = (int)next.Start.Line;
        int column = (int)next.Start.Column;
        PolicyNode node;
        switch (next)
        {
            case AnchorAlias alias:
                parser.MoveNext();
                return anchors.TryGetValue(alias.Value.Value, out PolicyNode? target)
                    ? target
                    : throw new PolicyException("", $"alias *{alias.Value.Value} names no anchor", file, line, column);

            case Scalar scalar:
                parser.MoveNext();
                PolicyNodeKind kind = TypeOf(scalar);
                // true, True and TRUE are one value; the reader compares with "true".
                string value = kind == PolicyNodeKind.Bool ? scalar.Value.ToLowerInvariant() : scalar.Value;
                node = PolicyNode.Scalar(kind, value, file, line, column);
                break;

            case MappingStart:
                parser.MoveNext();
                node = PolicyNode.Container(PolicyNodeKind.Map, file, line, column);
                while (!parser.TryConsume<MappingEnd>(out _))
                {
                    PolicyNode key = ReadYamlValue(parser, anchors, file);
                    if (key.Kind is PolicyNodeKind.Map or PolicyNodeKind.List)
                    {
                        throw new PolicyException("", "a key must be a plain name, not a map or list", file, key.Line, key.Column);
                    }

                    node.Entries.Add(new(key, ReadYamlValue(parser, anchors, file)));
                }

                break;

            case SequenceStart:
                parser.MoveNext();
                node = PolicyNode.Container(PolicyNodeKind.List, file, line, column);
                while (!parser.TryConsume<SequenceEnd>(out _))
                {
                    node.Items.Add(ReadYamlValue(parser, anchors, file));
                }

                break;

            default:
                throw new PolicyException("", $"unexpected YAML {next.GetType().Name}", file, line, column);
        }

        if (next is NodeEvent { Anchor.IsEmpty: false } anchored)
        {
            anchors[anchored.Anchor.Value] = node;
        }

        return node;
    }

    /// <summary>YAML 1.2 core schema for plain scalars; quoted scalars and explicit <c>!!str</c> are strings.</summary>
    private static PolicyNodeKind TypeOf(Scalar scalar)
    {
        if (scalar.Style != ScalarStyle.Plain || !scalar.Tag.IsEmpty)
        {
            return scalar.Tag.IsEmpty || scalar.Tag.Value == "tag:yaml.org,2002:str" ? PolicyNodeKind.String : TypeOfTag(scalar);
        }

        return scalar.Value switch
        {
            "" or "~" or "null" or "Null" or "NULL" => PolicyNodeKind.Null,
            "true" or "True" or "TRUE" or "false" or "False" or "FALSE" => PolicyNodeKind.Bool,
            _ when NumberPattern().IsMatch(scalar.Value) => PolicyNodeKind.Number,
            _ => PolicyNodeKind.String,
        };
    }

    private static PolicyNodeKind TypeOfTag(Scalar scalar) => scalar.Tag.Value switch
    {
        "tag:yaml.org,2002:int" or "tag:yaml.org,2002:float" => PolicyNodeKind.Number,
        "tag:yaml.org,2002:bool" => PolicyNodeKind.Bool,
        "tag:yaml.org,2002:null" => PolicyNodeKind.Null,
        _ => PolicyNodeKind.String,
    };

    /// <summary>Decimal integers and floats of the core schema; JSON's number syntax is a subset.</summary>
    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")]
    private static partial Regex NumberPattern();

    private static string WithoutMark(string message)
    {
        // YamlDotNet starts its messages with "(Line: 3, Col: 5, Idx: 20) - (Line: ...): ".
        int cut = message.IndexOf("): ", StringComparison.Ordinal);
        return cut >= 0 && message.StartsWith("(Line:", StringComparison.Ordinal) ? message[(cut + 3)..] : message;
    }
}
