using System.Text.Json;
using System.Text.Json.Serialization;

namespace Confine.Seccomp;

// The JSON shapes of a Confine profile and of a Docker/OCI profile, as read and written by the source
// generated context below (no reflection, so NativeAOT keeps working). Unknown keys land in Extra and
// are reported with their path.

internal sealed class ProfileDocument
{
    [JsonPropertyName("version")]
    public int? Version { get; set; }

    [JsonPropertyName("name")]
    public string? Name { get; set; }

    [JsonPropertyName("base")]
    public string? Base { get; set; }

    [JsonPropertyName("default_action")]
    public string? DefaultAction { get; set; }

    [JsonPropertyName("dangerous_action")]
    public string? DangerousAction { get; set; }

    [JsonPropertyName("foreign_arch_action")]
    public string? ForeignArchAction { get; set; }

    [JsonPropertyName("syscalls")]
    public List<RuleDocument?>? Syscalls { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Extra { get; set; }
}

internal sealed class RuleDocument
{
    [JsonPropertyName("name")]
    public string? Name { get; set; }

    [JsonPropertyName("names")]
    public List<string?>? Names { get; set; }

    [JsonPropertyName("action")]
    public string? Action { get; set; }

    [JsonPropertyName("args")]
    public List<ConditionDocument?>? Args { get; set; }

    [JsonPropertyName("comment")]
    public string? Comment { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Extra { get; set; }
}

internal sealed class ConditionDocument
{
    [JsonPropertyName("arg")]
    public int? Arg { get; set; }

    [JsonPropertyName("op")]
    public string? Op { get; set; }

    [JsonPropertyName("value")]
    public JsonElement? Value { get; set; }

    [JsonPropertyName("mask")]
    public JsonElement? Mask { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Extra { get; set; }
}

internal sealed class DockerProfileDocument
{
    [JsonPropertyName("defaultAction")]
    public string? DefaultAction { get; set; }

    [JsonPropertyName("defaultErrnoRet")]
    public int? DefaultErrnoRet { get; set; }

    [JsonPropertyName("architectures")]
    public List<string>? Architectures { get; set; }

    [JsonPropertyName("syscalls")]
    public List<DockerRuleDocument?>? Syscalls { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Extra { get; set; }
}

internal sealed class DockerRuleDocument
{
    [JsonPropertyName("name")]
    public string? Name { get; set; }

    [JsonPropertyName("names")]
    public List<string?>? Names { get; set; }

    [JsonPropertyName("action")]
    public string? Action { get; set; }

    [JsonPropertyName("errnoRet")]
    public int? ErrnoRet { get; set; }

    [JsonPropertyName("args")]
    public List<DockerConditionDocument?>? Args { get; set; }

    [JsonPropertyName("includes")]
    public DockerFilterDocument? Includes { get; set; }

    [JsonPropertyName("excludes")]
    public DockerFilterDocument? Excludes { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Extra { get; set; }
}

internal sealed class DockerConditionDocument
{
    [JsonPropertyName("index")]
    public int Index { get; set; }

    [JsonPropertyName("value")]
    public ulong Value { get; set; }

    [JsonPropertyName("valueTwo")]
    public ulong ValueTwo { get; set; }

    [JsonPropertyName("op")]
    public string? Op { get; set; }
}

internal sealed class DockerFilterDocument
{
    [JsonPropertyName("caps")]
    public List<string>? Caps { get; set; }

    [JsonPropertyName("arches")]
    public List<string>? Arches { get; set; }

    [JsonPropertyName("minKernel")]
    public string? MinKernel { get; set; }
}

[JsonSourceGenerationOptions(
    WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true)]
[JsonSerializable(typeof(ProfileDocument))]
[JsonSerializable(typeof(DockerProfileDocument))]
internal sealed partial class SeccompJsonContext : JsonSerializerContext;
