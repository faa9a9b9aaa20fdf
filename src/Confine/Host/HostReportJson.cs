using System.Text.Json;
using System.Text.Json.Serialization;

namespace Confine;

/// <summary>Writes <see cref="HostReport"/> as JSON without reflection, so it works under NativeAOT.</summary>
public static class HostReportJson
{
    /// <summary>The report as one indented JSON document with snake_case keys.</summary>
    public static string Serialize(HostReport report) => JsonSerializer.Serialize(report, HostReportJsonContext.Default.HostReport);
}

[JsonSourceGenerationOptions(
    WriteIndented = true,
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(HostReport))]
internal sealed partial class HostReportJsonContext : JsonSerializerContext;
