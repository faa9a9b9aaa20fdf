using System.Globalization;

namespace Confine.Configuration;

/// <summary>
/// The short text forms that policy files and the command line share, written as Docker writes them
/// where Docker has one: <c>/tmp:size=64m</c>, <c>nofile=1024:2048</c>, <c>/dev/sda:1mb</c>.
/// </summary>
internal static class PolicySyntax
{
    /// <summary>
    /// The size of a tmpfs whose text names none. Docker leaves it to the kernel (half of RAM); a
    /// sandbox's scratch space must be bounded, so it is 64 MiB.
    /// </summary>
    public const long DefaultTmpfsSize = 64L << 20;

    /// <summary>rlimit names as Docker's <c>--ulimit</c> and <c>ulimit(1)</c> write them, plus <c>as</c>.</summary>
    public static readonly IReadOnlyList<(string Name, RlimitResource Resource)> RlimitNames =
    [
        ("core", RlimitResource.Core),
        ("cpu", RlimitResource.Cpu),
        ("data", RlimitResource.Data),
        ("fsize", RlimitResource.FileSize),
        ("memlock", RlimitResource.MemLock),
        ("msgqueue", RlimitResource.MsgQueue),
        ("nofile", RlimitResource.NoFile),
        ("nproc", RlimitResource.NProc),
        ("sigpending", RlimitResource.SigPending),
        ("stack", RlimitResource.Stack),
        ("as", RlimitResource.AddressSpace),
    ];

    public static string RlimitName(RlimitResource resource) =>
        RlimitNames.First(n => n.Resource == resource).Name;

    public static RlimitResource ParseRlimitName(string key, string name)
    {
        foreach ((string known, RlimitResource resource) in RlimitNames)
        {
            if (known == name)
            {
                return resource;
            }
        }

        throw new PolicyException(
            key, $"'{name}' is not an rlimit Confine sets (use {string.Join(", ", RlimitNames.Select(n => n.Name))})");
    }

    /// <summary>Parses <c>SOFT[:HARD]</c>; either may be <c>unlimited</c> or <c>-1</c>. A lone value sets both.</summary>
    public static Rlimit ParseRlimitValue(string key, RlimitResource resource, string text)
    {
        string[] parts = text.Split(':');
        if (parts.Length > 2)
        {
            throw new PolicyException(key, $"'{text}' is not SOFT[:HARD]");
        }

        ulong soft = ParseRlimitNumber(key, parts[0]);
        ulong hard = parts.Length == 2 ? ParseRlimitNumber(key, parts[1]) : soft;
        return CheckRlimit(key, new Rlimit(resource, soft, hard));
    }

    public static Rlimit CheckRlimit(string key, Rlimit limit)
    {
        if (limit.Resource == RlimitResource.Core && (limit.Soft != 0 || limit.Hard != 0))
        {
            throw new PolicyException(key, "core dumps are always off in a sandbox (a core file can carry its memory out)");
        }

        if (limit.Soft > limit.Hard)
        {
            throw new PolicyException(
                key, $"the soft limit {FormatRlimitNumber(limit.Soft)} is above the hard limit {FormatRlimitNumber(limit.Hard)}");
        }

        return limit;
    }

    /// <summary>Parses Docker's <c>--ulimit NAME=SOFT[:HARD]</c>.</summary>
    public static Rlimit ParseUlimit(string text)
    {
        int equals = text.IndexOf('=');
        if (equals <= 0)
        {
            throw new PolicyException("rlimits", $"'{text}' is not NAME=SOFT[:HARD] (e.g. nofile=1024:2048)");
        }

        string name = text[..equals];
        string key = $"rlimits.{name}";
        return ParseRlimitValue(key, ParseRlimitName(key, name), text[(equals + 1)..]);
    }

    public static string FormatRlimit(Rlimit limit) => limit.Soft == limit.Hard
        ? FormatRlimitNumber(limit.Soft)
        : $"{FormatRlimitNumber(limit.Soft)}:{FormatRlimitNumber(limit.Hard)}";

    private static ulong ParseRlimitNumber(string key, string text) => text switch
    {
        "unlimited" or "-1" => Rlimit.Infinity,
        _ when ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ulong n) && n != Rlimit.Infinity => n,
        _ => throw new PolicyException(key, $"'{text}' is not a whole number or 'unlimited'"),
    };

    private static string FormatRlimitNumber(ulong value) =>
        value == Rlimit.Infinity ? "unlimited" : value.ToString(CultureInfo.InvariantCulture);

    /// <summary>Parses Docker's <c>--tmpfs PATH[:size=64m[,nr_inodes=N]]</c>.</summary>
    public static TmpfsMount ParseTmpfs(string key, string text)
    {
        int colon = text.IndexOf(':');
        string target = colon < 0 ? text : text[..colon];
        long size = DefaultTmpfsSize;
        long? inodes = null;
        if (colon >= 0)
        {
            foreach (string option in text[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                string[] pair = option.Split('=', 2);
                switch (pair[0])
                {
                    case "size" when pair.Length == 2:
                        size = Units.ParseSize($"{key}.size", pair[1]);
                        break;
                    case "nr_inodes" when pair.Length == 2
                        && long.TryParse(pair[1], NumberStyles.None, CultureInfo.InvariantCulture, out long n):
                        inodes = n;
                        break;
                    default:
                        throw new PolicyException(key, $"'{option}' in '{text}' is not size=SIZE or nr_inodes=N");
                }
            }
        }

        return new TmpfsMount(target, size, inodes);
    }

    /// <summary>Parses Docker's <c>--device-read-bps DEVICE:RATE</c> (a size for bytes, a count for IOPS).</summary>
    public static (string Device, long Rate) ParseDeviceRate(string key, string text, bool isBytes)
    {
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || colon == text.Length - 1)
        {
            throw new PolicyException(key, $"'{text}' is not DEVICE:RATE (e.g. /dev/sda:{(isBytes ? "10mb" : "1000")})");
        }

        string device = text[..colon];
        string rate = text[(colon + 1)..];
        long value = isBytes
            ? Units.ParseSize(key, rate)
            : long.TryParse(rate, NumberStyles.None, CultureInfo.InvariantCulture, out long n)
                ? n
                : throw new PolicyException(key, $"'{rate}' is not a whole number of operations per second");
        return (device, value);
    }

    public static NetworkMode ParseNetwork(string key, string text) => text switch
    {
        "none" => NetworkMode.None,
        "host" => NetworkMode.Host,
        _ => throw new PolicyException(key, $"'{text}' is not 'none' or 'host'"),
    };

    public static string FormatNetwork(NetworkMode mode) => mode == NetworkMode.Host ? "host" : "none";

    public static ViolationAction ParseViolationAction(string key, string text) => text switch
    {
        "record" => ViolationAction.Record,
        "kill" => ViolationAction.Kill,
        _ => throw new PolicyException(key, $"'{text}' is not 'record' or 'kill'"),
    };

    public static string FormatViolationAction(ViolationAction action) => action == ViolationAction.Kill ? "kill" : "record";

    /// <summary>
    /// Parses a memory-plus-swap size; <c>-1</c> (Docker's word for it) is unlimited swap.
    /// </summary>
    public static long ParseMemorySwap(string key, string text) =>
        text.Trim() == "-1" ? -1 : Units.ParseSize(key, text);

    public static string FormatMemorySwap(long bytes) => bytes == -1 ? "-1" : Units.FormatSize(bytes);
}
