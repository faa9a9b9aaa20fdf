using System.Text.Json;
using System.Text.Json.Serialization;

namespace Confine;

/// <summary>Reads and writes <see cref="Verdict"/> records without reflection, so it works under NativeAOT.</summary>
public static class VerdictJson
{
    /// <summary>The verdict as one indented JSON document.</summary>
    public static string Serialize(Verdict verdict) => JsonSerializer.Serialize(verdict, VerdictJsonContext.Default.Verdict);

    /// <summary>One violation as a single-line JSON object, with the same keys as in the verdict's <c>violations</c>.</summary>
    public static string Serialize(Violation violation) => JsonSerializer.Serialize(violation, VerdictLineJsonContext.Default.Violation);

    /// <summary>One usage sample as a single-line JSON object.</summary>
    public static string Serialize(UsageSample sample) => JsonSerializer.Serialize(sample, VerdictLineJsonContext.Default.UsageSample);

    /// <summary>Parses a verdict document written by <see cref="Serialize(Verdict)"/>.</summary>
    public static Verdict Deserialize(string json) =>
        JsonSerializer.Deserialize(json, VerdictJsonContext.Default.Verdict)
        ?? throw new JsonException("the verdict document is null");
}

[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(Verdict))]
internal sealed partial class VerdictJsonContext : JsonSerializerContext;

/// <summary>The records that are written one per line, as events: a violation, a usage sample.</summary>
[JsonSourceGenerationOptions(WriteIndented = false, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(Violation))]
[JsonSerializable(typeof(UsageSample))]
internal sealed partial class VerdictLineJsonContext : JsonSerializerContext;
