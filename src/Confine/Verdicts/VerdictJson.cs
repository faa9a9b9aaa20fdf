using System.Text.Json;
using System.Text.Json.Serialization;

namespace Confine;

/// <summary>Reads and writes <see cref="Verdict"/> records without reflection, so it works under NativeAOT.</summary>
public static class VerdictJson
{
    /// <summary>The verdict as one indented JSON document.</summary>
    public static string Serialize(Verdict verdict) => JsonSerializer.Serialize(verdict, VerdictJsonContext.Default.Verdict);

    /// <summary>Parses a verdict document written by <see cref="Serialize"/>.</summary>
    public static Verdict Deserialize(string json) =>
        JsonSerializer.Deserialize(json, VerdictJsonContext.Default.Verdict)
        ?? throw new JsonException("the verdict document is null");
}

[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(Verdict))]
internal sealed partial class VerdictJsonContext : JsonSerializerContext;
