using System.Collections.Immutable;
using System.Diagnostics;
using Confine.Configuration;

namespace Confine;

/// <summary>The syntax of a policy file.</summary>
public enum PolicyFileFormat
{
    /// <summary>JSON; comments and trailing commas are allowed.</summary>
    Json,

    /// <summary>YAML 1.2 (JSON is a subset of it).</summary>
    Yaml,
}

/// <summary>
/// A policy file (docs/configuration.md): a level to start from and the keys that refine it. Lists
/// in a file replace the level's list; maps (<c>env</c>, <c>limits</c>, <c>resources</c>,
/// <c>rlimits</c>) change only the keys they name. Every problem is a <see cref="PolicyException"/>
/// carrying the file, line and column of the offending key.
/// </summary>
public sealed class PolicyFile
{
    /// <summary>The names of the built-in seccomp profiles; any other value is a file path.</summary>
    internal static readonly ImmutableArray<string> BuiltinSeccompProfiles = ["default", "strict", "permissive"];

    private readonly List<Action<PolicyBuilder>> _changes = [];
    private readonly string _directory;

    private PolicyFile(string name, string directory)
    {
        Name = name;
        _directory = directory;
    }

    /// <summary>The file's name as it was given, used in messages and origins.</summary>
    public string Name { get; }

    /// <summary>The level the file names, if it names one.</summary>
    public IsolationLevel? Level { get; private set; }

    /// <summary>
    /// Reads and checks a policy file. <c>.json</c> files are JSON; others are YAML unless they start
    /// with <c>{</c>. Relative paths inside it are relative to the file's directory.
    /// </summary>
    public static PolicyFile Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string text = ReadBoundedText("config", path);

        PolicyFileFormat format = path.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
            || (!path.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase)
                && !path.EndsWith(".yml", StringComparison.OrdinalIgnoreCase)
                && text.TrimStart().StartsWith('{'))
            ? PolicyFileFormat.Json
            : PolicyFileFormat.Yaml;
        string directory = Path.GetDirectoryName(Path.GetFullPath(path)) ?? "/";
        return Parse(text, format, path, directory);
    }

    /// <summary>The most a policy or profile file may hold; a real one is a few kilobytes.</summary>
    internal const int MaxFileBytes = 1 << 20;

    /// <summary>
    /// Reads a policy or profile file, at most <see cref="MaxFileBytes"/> of it: a path such as
    /// <c>/dev/zero</c> would otherwise be read until memory runs out. A pipe (<c>/dev/stdin</c>) works.
    /// </summary>
    internal static string ReadBoundedText(string key, string path)
    {
        try
        {
            using FileStream stream = new(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);

            // Grown as needed rather than made at the limit: a fresh megabyte is zeroed page by page,
            // which would cost a short run more than reading the file.
            byte[] buffer = new byte[16 << 10];
            int length = 0;
            int read;
            while (length <= MaxFileBytes && (read = stream.Read(buffer, length, buffer.Length - length)) > 0)
            {
                length += read;
                if (length == buffer.Length && length <= MaxFileBytes)
                {
                    Array.Resize(ref buffer, Math.Min(buffer.Length * 4, MaxFileBytes + 1));
                }
            }

            if (length > MaxFileBytes)
            {
                throw new PolicyException(key, $"'{path}' holds more than {MaxFileBytes} bytes; a policy or profile file is a few kilobytes");
            }

            return new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetString(buffer, 0, length).TrimStart('\uFEFF');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PolicyException(key, $"cannot read '{path}': {e.Message}");
        }
    }

    /// <summary>
    /// Reads and checks policy text; relative paths in it are relative to <paramref name="directory"/>
    /// (default: the current one).
    /// </summary>
    public static PolicyFile Parse(string text, PolicyFileFormat format, string name = "<policy>", string? directory = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        PolicyNode root = format == PolicyFileFormat.Json
            ? PolicyNodeReader.ReadJson(text, name)
            : PolicyNodeReader.ReadYaml(text, name);
        var file = new PolicyFile(name, directory ?? Environment.CurrentDirectory);
        file.ReadRoot(root);
        return file;
    }

    /// <summary>The file's keys applied to <paramref name="policy"/> (its <see cref="Level"/> is not: the caller chose the base).</summary>
    public SandboxPolicy ApplyTo(SandboxPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        var builder = new PolicyBuilder(policy, null);
        ApplyTo(builder);
        return builder.Policy;
    }

    /// <summary>The file's level (or <paramref name="fallback"/>) refined by its keys, validated.</summary>
    public SandboxPolicy ToPolicy(IsolationLevel fallback = IsolationLevels.Default)
    {
        var builder = PolicyBuilder.ForLevel(Level ?? fallback);
        ApplyTo(builder);
        return builder.Validate();
    }

    internal void ApplyTo(PolicyBuilder builder)
    {
        foreach (Action<PolicyBuilder> change in _changes)
        {
            change(builder);
        }
    }

    private void ReadRoot(PolicyNode root)
    {
        foreach ((PolicyNode key, PolicyNode value, string path) in Members(root, "", PolicyKeys.Root))
        {
            PolicyOrigin origin = PolicyOrigin.FromFile(key);
            switch (path)
            {
                case "level":
                    Level = value.Located(path, () => IsolationLevels.Parse(path, value.AsString(path)));
                    break;
                case "hostname":
                {
                    string hostname = value.AsString(path);
                    Change(b => b.Set(path, origin, p => p with { Hostname = hostname }));
                    break;
                }

                case "network":
                {
                    NetworkMode network = value.Located(path, () => PolicySyntax.ParseNetwork(path, value.AsString(path)));
                    Change(b => b.Set(path, origin, p => p with { Network = network }));
                    break;
                }

                case "user":
                {
                    SandboxUser user = value.Located(path, () => SandboxUser.Parse(value.AsText(path)));
                    Change(b => b.Set(path, origin, p => p with { User = user }));
                    break;
                }

                case "workdir":
                {
                    string workdir = value.AsString(path);
                    Change(b => b.Set(path, origin, p => p with { WorkingDirectory = workdir }));
                    break;
                }

                case "env":
                    ReadEnvironment(value, path);
                    break;
                case "binds":
                {
                    List<(BindMount, PolicyOrigin)> binds =
                        [.. Items(value, path).Select(item => (ReadBind(item.Node, item.Path), PolicyOrigin.FromFile(item.Node)))];
                    Change(b => b.ReplaceBinds(binds));
                    break;
                }

                case "tmpfs":
                {
                    List<(TmpfsMount, PolicyOrigin)> mounts =
                        [.. Items(value, path).Select(item => (ReadTmpfs(item.Node, item.Path), PolicyOrigin.FromFile(item.Node)))];
                    Change(b => b.ReplaceTmpfs(mounts));
                    break;
                }

                case "system_paths":
                {
                    ImmutableArray<string> paths = [.. Items(value, path).Select(item => item.Node.AsString(item.Path))];
                    Change(b => b.Set(path, origin, p => p with { SystemPaths = paths }));
                    break;
                }

                case "timeout":
                {
                    TimeSpan? timeout = value.IsNull ? null : value.AsDuration(path);
                    Change(b => b.Set(path, origin, p => p with { Timeout = timeout }));
                    break;
                }

                case "limits":
                    ReadLimits(value, path);
                    break;
                case "resources":
                    ReadResources(value, path);
                    break;
                case "rlimits":
                    ReadRlimits(value, path);
                    break;
                case "seccomp_profile":
                {
                    string profile = ResolveProfile(value.AsString(path));
                    Change(b => b.Set(path, origin, p => p with { SeccompProfile = profile }));
                    break;
                }

                case "on_violation":
                {
                    ViolationAction action = value.Located(path, () => PolicySyntax.ParseViolationAction(path, value.AsString(path)));
                    Change(b => b.Set(path, origin, p => p with { OnViolation = action }));
                    break;
                }

                case "landlock":
                {
                    bool landlock = value.AsBool(path);
                    Change(b => b.Set(path, origin, p => p with { Landlock = landlock }));
                    break;
                }

                case "allow_degrade":
                {
                    bool allow = value.AsBool(path);
                    Change(b => b.Set(path, origin, p => p with { AllowDegrade = allow }));
                    break;
                }

                default:
                    throw new UnreachableException($"policy key '{path}' is listed but not read");
            }
        }
    }

    private void ReadEnvironment(PolicyNode map, string path)
    {
        if (map.Kind != PolicyNodeKind.Map)
        {
            throw map.Error(path, $"expected a map of NAME: value, not {map.Describe()}");
        }

        foreach ((PolicyNode key, PolicyNode value, string name) in FreeMembers(map, path))
        {
            string keyPath = $"{path}.{name}";
            if (name.Contains('=') || name.Contains('\0'))
            {
                throw key.Error(keyPath, $"'{name}' is not a valid variable name");
            }

            string? text = value.IsNull ? null : value.AsText(keyPath);
            PolicyOrigin origin = PolicyOrigin.FromFile(key);
            Change(b => b.SetEnvironment(name, text, origin));
        }
    }

    private void ReadLimits(PolicyNode map, string path)
    {
        foreach ((PolicyNode key, PolicyNode value, string keyPath) in Members(map, path, PolicyKeys.Limits))
        {
            long bytes = value.AsSize(keyPath);
            PolicyOrigin origin = PolicyOrigin.FromFile(key);
            bool stdout = key.Text == "stdout";
            Change(b => b.Set(keyPath, origin, p => stdout ? p with { StdoutLimitBytes = bytes } : p with { StderrLimitBytes = bytes }));
        }
    }

    private void ReadResources(PolicyNode map, string path)
    {
        foreach ((PolicyNode key, PolicyNode value, string keyPath) in Members(map, path, PolicyKeys.Resources))
        {
            PolicyOrigin origin = PolicyOrigin.FromFile(key);
            if (key.Text == "device_io")
            {
                List<(DeviceIoLimit, PolicyOrigin)> limits =
                    [.. Items(value, keyPath).Select(item => (ReadDeviceIo(item.Node, item.Path), PolicyOrigin.FromFile(item.Node)))];
                Change(b => b.ReplaceDeviceIo(limits));
                continue;
            }

            Func<ResourceLimits, ResourceLimits> change;
            switch (key.Text)
            {
                case "memory":
                {
                    long? memory = Optional(value, () => value.AsSize(keyPath));
                    change = r => r with { MemoryBytes = memory };
                    break;
                }

                case "memory_swap":
                {
                    // -1 is Docker's "unlimited swap"; as a number it is not a size.
                    long? swap = Optional(value, () => value.Kind switch
                    {
                        PolicyNodeKind.Number when value.Text == "-1" => -1L,
                        PolicyNodeKind.String => value.Located(keyPath, () => PolicySyntax.ParseMemorySwap(keyPath, value.Text)),
                        _ => value.AsSize(keyPath),
                    });
                    change = r => r with { MemorySwapBytes = swap };
                    break;
                }

                case "cpus":
                {
                    double? cpus = Optional(value, () => value.AsNumber(keyPath));
                    change = r => r with { Cpus = cpus };
                    break;
                }

                case "cpuset_cpus":
                {
                    string? cpuset = value.IsNull ? null : value.AsText(keyPath);
                    change = r => r with { CpusetCpus = cpuset };
                    break;
                }

                case "cpu_time":
                {
                    TimeSpan? cpuTime = Optional(value, () => value.AsDuration(keyPath));
                    change = r => r with { CpuTime = cpuTime };
                    break;
                }

                case "pids_limit":
                {
                    int? pids = PidsLimit(value, keyPath, Optional(value, () => value.AsInteger(keyPath)));
                    change = r => r with { PidsLimit = pids };
                    break;
                }

                case "allow_unenforced":
                {
                    bool allow = value.AsBool(keyPath);
                    change = r => r with { AllowUnenforced = allow };
                    break;
                }

                case "cgroup_parent":
                {
                    string? parent = value.IsNull ? null : value.AsString(keyPath);
                    change = r => r with { CgroupParent = parent };
                    break;
                }

                default:
                    throw new UnreachableException($"policy key '{keyPath}' is listed but not read");
            }

            Change(b => b.SetResources(keyPath, origin, change));
        }
    }

    /// <summary>Docker writes an unlimited pids limit as -1; here that is the same as null.</summary>
    private static int? PidsLimit(PolicyNode value, string path, long? count) => count switch
    {
        null or -1 => null,
        > int.MaxValue or < int.MinValue => throw value.Error(path, $"{count} is too large"),
        _ => (int)count.Value,
    };

    private void ReadRlimits(PolicyNode map, string path)
    {
        foreach ((PolicyNode key, PolicyNode value, string keyPath) in Members(map, path, PolicyKeys.Rlimits))
        {
            RlimitResource resource = PolicySyntax.ParseRlimitName(keyPath, key.Text);
            // A number sets soft and hard alike; -1 is unlimited, as in Docker's --ulimit.
            string text = value.Kind == PolicyNodeKind.Number
                ? value.AsInteger(keyPath).ToString(System.Globalization.CultureInfo.InvariantCulture)
                : value.AsString(keyPath);
            Rlimit limit = value.Located(keyPath, () => PolicySyntax.ParseRlimitValue(keyPath, resource, text));
            PolicyOrigin origin = PolicyOrigin.FromFile(key);
            Change(b => b.SetRlimit(limit, origin));
        }
    }

    private BindMount ReadBind(PolicyNode item, string path)
    {
        BindMount bind;
        if (item.Kind == PolicyNodeKind.String)
        {
            bind = item.Located(path, () => BindMount.Parse(item.Text));
        }
        else
        {
            string? source = null;
            string? target = null;
            bool writable = false;
            const string Shapes = "HOST:SANDBOX[:ro|rw] or a map";
            foreach ((PolicyNode key, PolicyNode value, string keyPath) in Members(item, path, PolicyKeys.Binds, Shapes))
            {
                switch (key.Text)
                {
                    case "source":
                        source = value.AsString(keyPath);
                        break;
                    case "target":
                        target = value.AsString(keyPath);
                        break;
                    default:
                        writable = value.AsBool(keyPath);
                        break;
                }
            }

            if (source is null)
            {
                throw item.Error($"{path}.source", "a bind needs a source");
            }

            bind = new BindMount(source, target ?? source, writable);
        }

        return bind with { Source = Path.GetFullPath(bind.Source, _directory) };
    }

    private static TmpfsMount ReadTmpfs(PolicyNode item, string path)
    {
        if (item.Kind == PolicyNodeKind.String)
        {
            return item.Located(path, () => PolicySyntax.ParseTmpfs(path, item.Text));
        }

        string? target = null;
        long size = PolicySyntax.DefaultTmpfsSize;
        long? inodes = null;
        foreach ((PolicyNode key, PolicyNode value, string keyPath) in Members(item, path, PolicyKeys.Tmpfs, "PATH[:size=SIZE] or a map"))
        {
            switch (key.Text)
            {
                case "target":
                    target = value.AsString(keyPath);
                    break;
                case "size":
                    size = value.AsSize(keyPath);
                    break;
                default:
                    inodes = value.IsNull ? null : value.AsInteger(keyPath);
                    break;
            }
        }

        return target is null ? throw item.Error($"{path}.target", "a tmpfs needs a target") : new TmpfsMount(target, size, inodes);
    }

    private static DeviceIoLimit ReadDeviceIo(PolicyNode item, string path)
    {
        var limit = new DeviceIoLimit("");
        bool named = false;
        foreach ((PolicyNode key, PolicyNode value, string keyPath) in Members(item, path, PolicyKeys.DeviceIo))
        {
            limit = key.Text switch
            {
                "device" => limit with { Device = value.AsText(keyPath) },
                "read_bps" => limit with { ReadBps = Optional(value, () => value.AsSize(keyPath)) },
                "write_bps" => limit with { WriteBps = Optional(value, () => value.AsSize(keyPath)) },
                "read_iops" => limit with { ReadIops = Optional(value, () => value.AsInteger(keyPath)) },
                _ => limit with { WriteIops = Optional(value, () => value.AsInteger(keyPath)) },
            };
            named |= key.Text == "device";
        }

        return named ? limit : throw item.Error($"{path}.device", "a device I/O limit needs a device");
    }

    private string ResolveProfile(string profile) =>
        BuiltinSeccompProfiles.Contains(profile) || !profile.Contains('/') ? profile : Path.GetFullPath(profile, _directory);

    private void Change(Action<PolicyBuilder> change) => _changes.Add(change);

    private static T? Optional<T>(PolicyNode value, Func<T> read)
        where T : struct => value.IsNull ? null : read();

    /// <summary>The entries of a map whose keys must be among <paramref name="keys"/>, each at most once.</summary>
    private static IEnumerable<(PolicyNode Key, PolicyNode Value, string Path)> Members(
        PolicyNode map, string path, ImmutableArray<PolicyKey> keys, string? alternative = null)
    {
        if (map.Kind != PolicyNodeKind.Map)
        {
            string expected = alternative is null ? "a map" : alternative;
            throw map.Error(path.Length > 0 ? path : "(root)", $"expected {expected}, not {map.Describe()}");
        }

        foreach ((PolicyNode key, PolicyNode value, string name) in FreeMembers(map, path))
        {
            string keyPath = path.Length > 0 ? $"{path}.{name}" : name;
            if (!keys.Any(k => k.Name == name))
            {
                throw key.Error(keyPath, $"unknown key (known here: {string.Join(", ", keys.Select(k => k.Name))})");
            }

            yield return (key, value, keyPath);
        }
    }

    /// <summary>The entries of a map with string keys, each at most once.</summary>
    private static IEnumerable<(PolicyNode Key, PolicyNode Value, string Name)> FreeMembers(PolicyNode map, string path)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach ((PolicyNode key, PolicyNode value) in map.Entries)
        {
            if (key.Kind is not (PolicyNodeKind.String or PolicyNodeKind.Number or PolicyNodeKind.Bool) || key.Text.Length == 0)
            {
                throw key.Error(path, $"{key.Describe()} is not a key name");
            }

            string keyPath = path.Length > 0 ? $"{path}.{key.Text}" : key.Text;
            if (!seen.Add(key.Text))
            {
                throw key.Error(keyPath, "is set twice");
            }

            yield return (key, value, key.Text);
        }
    }

    private static IEnumerable<(PolicyNode Node, string Path)> Items(PolicyNode list, string path)
    {
        if (list.Kind != PolicyNodeKind.List)
        {
            throw list.Error(path, $"expected a list, not {list.Describe()}");
        }

        for (int i = 0; i < list.Items.Count; i++)
        {
            yield return (list.Items[i], $"{path}[{i}]");
        }
    }
}
