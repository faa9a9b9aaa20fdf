using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Confine.Seccomp;

/// <summary>
/// Reads and writes seccomp profiles as JSON in Confine's own format (<c>docs/seccomp.md</c>), and reads
/// Docker/OCI profiles. Every error is a <see cref="PolicyException"/> whose path names the offending key
/// (<c>syscalls[3].name: unknown syscall 'foo'</c>). Source-generated, so it works under NativeAOT.
/// </summary>
public static class SeccompProfileJson
{
    private const int CurrentVersion = 1;

    private static readonly string[] s_operators = ["eq", "ne", "lt", "le", "gt", "ge", "masked_eq"];

    /// <summary>Parses and validates a profile in Confine's format.</summary>
    /// <exception cref="PolicyException">A key is missing, unknown or wrong; the path names it.</exception>
    public static SeccompProfile Parse(string json)
    {
        ProfileDocument document = Deserialize(json, SeccompJsonContext.Default.ProfileDocument);
        RejectUnknownKeys(document.Extra, "");
        if (document.Version is { } version && version != CurrentVersion)
        {
            throw new PolicyException(
                "version", $"version {version} is not known; this Confine reads version {CurrentVersion}");
        }

        SeccompProfile profile = new() { Name = document.Name ?? document.Base ?? "custom" };
        if (document.Base is { } baseName)
        {
            SeccompProfile builtin = SeccompProfile.Builtin(baseName)
                ?? throw new PolicyException(
                    "base", $"unknown built-in profile '{baseName}': use default, strict or permissive");
            profile = builtin with { Name = profile.Name };
        }

        profile = profile with
        {
            DefaultAction = ParseAction(document.DefaultAction, "default_action") ?? profile.DefaultAction,
            DangerousAction = ParseAction(document.DangerousAction, "dangerous_action") ?? profile.DangerousAction,
            ForeignArchitectureAction = ParseAction(document.ForeignArchAction, "foreign_arch_action")
                ?? profile.ForeignArchitectureAction,
        };

        List<SyscallRule> rules = [];
        List<SeccompRuleSet.RulePath> paths = [];
        List<RuleDocument?> syscalls = document.Syscalls ?? [];
        for (int k = 0; k < syscalls.Count; k++)
        {
            ReadRule(syscalls[k], $"syscalls[{k}]", rules, paths);
        }

        // A file's rules for a syscall replace the base's rules for it, so a base can be narrowed as well
        // as widened without the two sets of rules contradicting each other.
        HashSet<string> named = [.. rules.Select(r => r.Name)];
        List<SyscallRule> kept = [.. profile.Syscalls.Where(r => !named.Contains(r.Name))];
        List<SeccompRuleSet.RulePath> keptPaths =
        [
            .. kept.Select((r, i) => $"base '{document.Base}' rule {i} ({r.Name})")
                .Select(path => new SeccompRuleSet.RulePath(path, path)),
        ];
        profile = profile with { Syscalls = [.. kept, .. rules] };
        List<SeccompRuleSet.RulePath> allPaths = [.. keptPaths, .. paths];

        SeccompRuleSet.Build(profile, i => allPaths[i]);
        return profile;
    }

    /// <summary>Writes <paramref name="profile"/> in Confine's format, which <see cref="Parse"/> reads back.</summary>
    public static string Serialize(SeccompProfile profile)
    {
        ArgumentNullException.ThrowIfNull(profile);
        List<RuleDocument?> syscalls = [];
        foreach (SyscallRule rule in profile.Syscalls)
        {
            // Runs of unconditional rules with one action are written as one entry with "names".
            if (rule.Conditions.IsEmpty && syscalls.Count > 0 && syscalls[^1] is { Args: null } last
                && last.Action == rule.Action.ToString())
            {
                last.Names ??= [last.Name];
                last.Name = null;
                last.Names.Add(rule.Name);
                continue;
            }

            syscalls.Add(new RuleDocument
            {
                Name = rule.Name,
                Action = rule.Action.ToString(),
                Args = rule.Conditions.IsEmpty ? null : [.. rule.Conditions.Select(WriteCondition)],
            });
        }

        ProfileDocument document = new()
        {
            Version = CurrentVersion,
            Name = profile.Name,
            DefaultAction = profile.DefaultAction.ToString(),
            DangerousAction = profile.DangerousAction.ToString(),
            ForeignArchAction = profile.ForeignArchitectureAction?.ToString(),
            Syscalls = syscalls,
        };
        return JsonSerializer.Serialize(document, SeccompJsonContext.Default.ProfileDocument);
    }

    /// <summary>
    /// Reads a Docker/OCI seccomp profile (<c>defaultAction</c>, <c>syscalls[].names/action/args/errnoRet</c>).
    /// Rules that need a capability are left out (the sandbox has none), as are rules for other
    /// architectures and names this system does not know; <paramref name="notes"/> says what was left
    /// out or changed. The dangerous list and the x86_64-only rule apply on top, as for every profile.
    /// </summary>
    /// <exception cref="PolicyException">A key is missing or wrong; the path names it.</exception>
    public static SeccompProfile ParseDocker(string json, out ImmutableArray<string> notes)
    {
        DockerProfileDocument document = Deserialize(json, SeccompJsonContext.Default.DockerProfileDocument);
        List<string> said = [];
        SeccompAction defaultAction = DockerAction(
            document.DefaultAction ?? throw new PolicyException("defaultAction", "is required"),
            document.DefaultErrnoRet,
            "defaultAction",
            said);

        if (document.Architectures is { Count: > 0 } architectures && architectures.Any(a => a != "SCMP_ARCH_X86_64"))
        {
            said.Add("architectures: only x86_64 calls are allowed; i386 and x32 calls are refused whatever it says");
        }

        List<SyscallRule> rules = [];
        List<SeccompRuleSet.RulePath> paths = [];
        List<DockerRuleDocument?> syscalls = document.Syscalls ?? [];
        Version kernel = Environment.OSVersion.Version;
        for (int k = 0; k < syscalls.Count; k++)
        {
            string path = $"syscalls[{k}]";
            DockerRuleDocument rule = syscalls[k] ?? throw new PolicyException(path, "is null");
            if (!DockerRuleApplies(rule, kernel, path, said))
            {
                continue;
            }

            string actionName = rule.Action ?? throw new PolicyException($"{path}.action", "is required");
            SeccompAction action = DockerAction(actionName, rule.ErrnoRet, $"{path}.action", said);
            ImmutableArray<ArgumentCondition> conditions =
                [.. (rule.Args ?? []).Select((c, j) => DockerCondition(c, $"{path}.args[{j}]"))];
            List<string?> names = rule.Names ?? (rule.Name is null ? [] : [rule.Name]);
            for (int m = 0; m < names.Count; m++)
            {
                string namePath = rule.Names is null ? $"{path}.name" : $"{path}.names[{m}]";
                string name = names[m] ?? throw new PolicyException(namePath, "is null");
                if (SyscallNumbers.Resolve(name, out _) != SyscallNumbers.Kind.Native)
                {
                    said.Add($"{namePath}: '{name}' is not an x86_64 syscall known here; left out");
                    continue;
                }

                rules.Add(new SyscallRule(name, action) { Conditions = conditions });
                paths.Add(new SeccompRuleSet.RulePath(path, namePath));
            }
        }

        SeccompProfile profile = new() { Name = "docker", DefaultAction = defaultAction, Syscalls = [.. rules] };
        SeccompRuleSet.Build(profile, i => paths[i]);
        notes = [.. said];
        return profile;
    }

    private static T Deserialize<T>(string json, JsonTypeInfo<T> type)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            return JsonSerializer.Deserialize(json, type)
                ?? throw new PolicyException("profile", "the document is null");
        }
        catch (JsonException e)
        {
            string path = e.Path switch
            {
                null or "$" => "profile",
                _ when e.Path.StartsWith("$.", StringComparison.Ordinal) => e.Path[2..],
                _ => e.Path,
            };
            string detail = e.Message.Split(" Path:", 2)[0].TrimEnd('.');
            throw new PolicyException(
                path,
                $"malformed or of the wrong type at line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1} "
                + $"({detail})");
        }
    }

    private static void ReadRule(
        RuleDocument? rule, string path, List<SyscallRule> rules, List<SeccompRuleSet.RulePath> paths)
    {
        if (rule is null)
        {
            throw new PolicyException(path, "is null");
        }

        RejectUnknownKeys(rule.Extra, path);
        if (rule.Name is not null && rule.Names is not null)
        {
            throw new PolicyException(path, "has both 'name' and 'names'; use one");
        }

        List<string?> names = rule.Names ?? (rule.Name is null ? [] : [rule.Name]);
        if (names.Count == 0)
        {
            throw new PolicyException(path, "needs 'name' or a non-empty 'names'");
        }

        SeccompAction action = ParseAction(rule.Action, $"{path}.action") ?? SeccompAction.Allow;
        List<ConditionDocument?> args = rule.Args ?? [];
        ImmutableArray<ArgumentCondition> conditions =
            [.. args.Select((c, j) => ReadCondition(c, $"{path}.args[{j}]"))];
        for (int m = 0; m < names.Count; m++)
        {
            string namePath = rule.Names is null ? $"{path}.name" : $"{path}.names[{m}]";
            string name = names[m] is { Length: > 0 } n ? n : throw new PolicyException(namePath, "is empty");
            rules.Add(new SyscallRule(name, action) { Conditions = conditions });
            paths.Add(new SeccompRuleSet.RulePath(path, namePath));
        }
    }

    private static ArgumentCondition ReadCondition(ConditionDocument? condition, string path)
    {
        if (condition is null)
        {
            throw new PolicyException(path, "is null");
        }

        RejectUnknownKeys(condition.Extra, path);
        int index = condition.Arg ?? throw new PolicyException($"{path}.arg", "is required (0 to 5)");
        string operators = string.Join(", ", s_operators);
        string op = condition.Op ?? throw new PolicyException($"{path}.op", $"is required ({operators})");
        SeccompComparison comparison = op switch
        {
            "eq" => SeccompComparison.Equal,
            "ne" => SeccompComparison.NotEqual,
            "lt" => SeccompComparison.Less,
            "le" => SeccompComparison.LessOrEqual,
            "gt" => SeccompComparison.Greater,
            "ge" => SeccompComparison.GreaterOrEqual,
            "masked_eq" => SeccompComparison.MaskedEqual,
            _ => throw new PolicyException($"{path}.op", $"unknown comparison '{op}': use {operators}"),
        };

        ulong value = ReadValue(condition.Value, $"{path}.value")
            ?? throw new PolicyException($"{path}.value", "is required");
        ulong? mask = ReadValue(condition.Mask, $"{path}.mask");
        if (comparison == SeccompComparison.MaskedEqual && mask is null)
        {
            throw new PolicyException($"{path}.mask", "is required with masked_eq");
        }

        if (comparison != SeccompComparison.MaskedEqual && mask is not null)
        {
            throw new PolicyException($"{path}.mask", "is only meaningful with masked_eq");
        }

        return new ArgumentCondition(index, comparison, value, mask ?? 0);
    }

    private static ulong? ReadValue(JsonElement? element, string path)
    {
        if (element is not { } value || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind == JsonValueKind.Number)
        {
            return value.TryGetUInt64(out ulong number)
                ? number
                : throw new PolicyException(path, $"{value.GetRawText()} is not an unsigned 64-bit integer");
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            string text = value.GetString()!;
            return SyscallConstants.TryParseValue(text, out ulong parsed, out string? unknown)
                ? parsed
                : throw new PolicyException(path, unknown is { Length: > 0 }
                    ? $"unknown constant '{unknown}'"
                    : $"'{text}' is not a number, 0x hex, or C constants joined by |");
        }

        throw new PolicyException(path, "must be a number or a string");
    }

    private static ConditionDocument WriteCondition(ArgumentCondition condition) => new()
    {
        Arg = condition.Index,
        Op = s_operators[(int)condition.Comparison],
        Value = Hex(condition.Value),
        Mask = condition.Comparison == SeccompComparison.MaskedEqual ? Hex(condition.Mask) : null,
    };

    private static JsonElement Hex(ulong value)
    {
        using JsonDocument document = JsonDocument.Parse($"\"0x{value.ToString("x", CultureInfo.InvariantCulture)}\"");
        return document.RootElement.Clone();
    }

    private static SeccompAction? ParseAction(string? text, string path)
    {
        if (text is null)
        {
            return null;
        }

        return SeccompAction.TryParse(text, out SeccompAction action)
            ? action
            : throw new PolicyException(path, $"unknown action '{text}': use allow, errno, errno:NAME, kill or record");
    }

    private static void RejectUnknownKeys(Dictionary<string, JsonElement>? extra, string path)
    {
        if (extra is { Count: > 0 })
        {
            string key = extra.Keys.First();
            throw new PolicyException(path.Length == 0 ? key : $"{path}.{key}", "unknown key");
        }
    }

    private static SeccompAction DockerAction(string action, int? errno, string path, List<string> notes)
    {
        switch (action)
        {
            case "SCMP_ACT_ALLOW":
                return SeccompAction.Allow;
            case "SCMP_ACT_ERRNO":
                int value = errno ?? SeccompErrno.EPERM;
                return value is >= 1 and <= SeccompAction.MaxErrno
                    ? SeccompAction.Errno(value)
                    : throw new PolicyException(path, $"errno {value} is outside 1 to {SeccompAction.MaxErrno}");
            case "SCMP_ACT_KILL" or "SCMP_ACT_KILL_THREAD" or "SCMP_ACT_KILL_PROCESS":
                if (action != "SCMP_ACT_KILL_PROCESS")
                {
                    notes.Add($"{path}: {action} kills the whole process here, not one thread");
                }

                return SeccompAction.KillProcess;
            case "SCMP_ACT_TRAP":
                notes.Add($"{path}: SCMP_ACT_TRAP kills the process here (no SIGSYS handler is run)");
                return SeccompAction.KillProcess;
            case "SCMP_ACT_NOTIFY":
                return SeccompAction.Record;
            case "SCMP_ACT_LOG":
                notes.Add($"{path}: SCMP_ACT_LOG allows the call without logging it");
                return SeccompAction.Allow;
            case "SCMP_ACT_TRACE":
                notes.Add($"{path}: SCMP_ACT_TRACE fails the call with ENOSYS, as it does without a tracer");
                return SeccompAction.Enosys;
            default:
                throw new PolicyException(path, $"unknown action '{action}'");
        }
    }

    private static bool DockerRuleApplies(DockerRuleDocument rule, Version kernel, string path, List<string> notes)
    {
        if (rule.Includes?.Caps is { Count: > 0 } caps)
        {
            notes.Add($"{path}: needs {string.Join(", ", caps)}, which the sandbox never has; left out");
            return false;
        }

        static bool Amd64(List<string>? arches) =>
            arches?.Any(a => a is "amd64" or "x86_64" or "SCMP_ARCH_X86_64") == true;
        if (rule.Includes?.Arches is { Count: > 0 } includes && !Amd64(includes))
        {
            return false;
        }

        if (Amd64(rule.Excludes?.Arches))
        {
            return false;
        }

        if (rule.Includes?.MinKernel is { } minimum)
        {
            if (!Version.TryParse(minimum.Split('-')[0], out Version? wanted))
            {
                throw new PolicyException($"{path}.includes.minKernel", $"'{minimum}' is not a kernel version");
            }

            if (kernel < wanted)
            {
                return false;
            }
        }

        return true;
    }

    private static ArgumentCondition DockerCondition(DockerConditionDocument? condition, string path)
    {
        if (condition is null)
        {
            throw new PolicyException(path, "is null");
        }

        // Docker keeps libseccomp's order: for masked equality, "value" is the mask and "valueTwo" the datum.
        return condition.Op switch
        {
            "SCMP_CMP_EQ" => ArgumentCondition.Equal(condition.Index, condition.Value),
            "SCMP_CMP_NE" => new(condition.Index, SeccompComparison.NotEqual, condition.Value),
            "SCMP_CMP_LT" => new(condition.Index, SeccompComparison.Less, condition.Value),
            "SCMP_CMP_LE" => new(condition.Index, SeccompComparison.LessOrEqual, condition.Value),
            "SCMP_CMP_GT" => new(condition.Index, SeccompComparison.Greater, condition.Value),
            "SCMP_CMP_GE" => new(condition.Index, SeccompComparison.GreaterOrEqual, condition.Value),
            "SCMP_CMP_MASKED_EQ" => ArgumentCondition.MaskedEqual(condition.Index, condition.Value, condition.ValueTwo),
            _ => throw new PolicyException($"{path}.op", $"unknown comparison '{condition.Op}'"),
        };
    }
}
