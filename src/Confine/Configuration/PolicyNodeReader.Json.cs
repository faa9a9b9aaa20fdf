using System.Text;
using System.Text.Json;

namespace Confine.Configuration;

internal static partial class PolicyNodeReader
{
    /// <summary>
    /// Reads a JSON policy with <see cref="Utf8JsonReader"/>, which gives every token's byte offset
    /// (JsonDocument keeps none), so that errors can name a line and column. Comments and trailing
    /// commas are allowed, as in most hand-written configuration.
    /// </summary>
    public static PolicyNode ReadJson(string text, string file)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(text);
        var lines = new LineIndex(utf8);
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions
        {
            CommentHandling = JsonCommentHandling.Skip,
            AllowTrailingCommas = true,
            MaxDepth = 64,
        });

        try
        {
            if (!reader.Read())
            {
                throw new PolicyException("", "the file is empty; an empty policy is written {}", file, 1, 1);
            }

            PolicyNode root = ReadJsonValue(ref reader, lines, file);
            if (reader.Read())
            {
                (int line, int column) = lines.Position(reader.TokenStartIndex);
                throw new PolicyException("", "more than one JSON value in the file", file, line, column);
            }

            return root;
        }
        catch (JsonException e)
        {
            // The reader's line is 0-based, its position a byte offset within the line.
            int line = (int)(e.LineNumber ?? 0) + 1;
            int column = (int)(e.BytePositionInLine ?? 0) + 1;
            throw new PolicyException("", $"not valid JSON: {FirstSentence(e.Message)}", file, line, column);
        }
    }

    private static PolicyNode ReadJsonValue(ref Utf8JsonReader reader, LineIndex lines, string file)
    {
        (int line, int column) = lines.Position(reader.TokenStartIndex);
        switch (reader.TokenType)
        {
            case JsonTokenType.StartObject:
            {
                PolicyNode map = PolicyNode.Container(PolicyNodeKind.Map, file, line, column);
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    (int keyLine, int keyColumn) = lines.Position(reader.TokenStartIndex);
                    PolicyNode key = PolicyNode.Scalar(PolicyNodeKind.String, reader.GetString()!, file, keyLine, keyColumn);
                    reader.Read();
                    map.Entries.Add(new(key, ReadJsonValue(ref reader, lines, file)));
                }

                return map;
            }

            case JsonTokenType.StartArray:
            {
                PolicyNode list = PolicyNode.Container(PolicyNodeKind.List, file, line, column);
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    list.Items.Add(ReadJsonValue(ref reader, lines, file));
                }

                return list;
            }

            case JsonTokenType.String:
                return PolicyNode.Scalar(PolicyNodeKind.String, reader.GetString()!, file, line, column);
            case JsonTokenType.Number:
                return PolicyNode.Scalar(PolicyNodeKind.Number, Encoding.UTF8.GetString(reader.ValueSpan), file, line, column);
            case JsonTokenType.True:
                return PolicyNode.Scalar(PolicyNodeKind.Bool, "true", file, line, column);
            case JsonTokenType.False:
                return PolicyNode.Scalar(PolicyNodeKind.Bool, "false", file, line, column);
            case JsonTokenType.Null:
                return PolicyNode.Scalar(PolicyNodeKind.Null, "", file, line, column);
            default:
                throw new PolicyException("", $"unexpected JSON token {reader.TokenType}", file, line, column);
        }
    }

    private static string FirstSentence(string message)
    {
        // System.Text.Json appends "LineNumber: n | BytePositionInLine: m." which the location already says.
        int cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        return (cut > 0 ? message[..cut] : message).TrimEnd('.', ' ');
    }

    /// <summary>Turns byte offsets into 1-based lines and columns (columns count characters, not bytes).</summary>
    private sealed class LineIndex
    {
        private readonly byte[] _text;
        private readonly List<int> _starts = [0];

        public LineIndex(byte[] text)
        {
            _text = text;
            for (int i = 0; i < text.Length; i++)
            {
                if (text[i] == (byte)'\n')
                {
                    _starts.Add(i + 1);
                }
            }
        }

        public (int Line, int Column) Position(long offset)
        {
            int index = _starts.BinarySearch((int)offset);
            int line = index >= 0 ? index : ~index - 1;
            int start = _starts[line];
            int column = Encoding.UTF8.GetCharCount(_text, start, (int)offset - start) + 1;
            return (line + 1, column);
        }
    }
}
