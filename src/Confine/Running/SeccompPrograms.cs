using System.Collections.Concurrent;
using Confine.Seccomp;

namespace Confine.Running;

/// <summary>
/// Resolves a policy's seccomp profile (a built-in name or a profile file) and compiles it once:
/// compiling checks the program against the profile call by call, which is too slow to repeat on
/// every run of the same profile.
/// </summary>
internal static class SeccompPrograms
{
    /// <summary>SECCOMP_FILTER_FLAG_NEW_LISTENER, from <c>linux/seccomp.h</c>.</summary>
    public const uint SECCOMP_FILTER_FLAG_NEW_LISTENER = 1U << 3;

    private static readonly ConcurrentDictionary<string, Compiled> s_cache = new(StringComparer.Ordinal);

    /// <summary>A compiled profile and how the helper must load it.</summary>
    public sealed record Compiled(byte[] Program, uint Flags)
    {
        /// <summary>
        /// Whether the program kills a process for some call (a profile that uses the <c>kill</c> action),
        /// so that a command ending by SIGSYS was most likely ended by the filter.
        /// </summary>
        public bool CanKill { get; } = BpfInterpreter.CanKill(Program);
    }

    /// <summary>The profile name that turns syscall filtering off, as Docker's <c>seccomp=unconfined</c> does.</summary>
    public const string Unconfined = "unconfined";

    /// <summary>Whether <paramref name="name"/> is built in: it needs no file, so it cannot be a bad policy.</summary>
    public static bool IsBuiltIn(string name) => name is Unconfined or "default" or "strict" or "permissive";

    /// <summary>
    /// The compiled program for <paramref name="name"/>, or null for <see cref="Unconfined"/>; throws
    /// <see cref="PolicyException"/> for a bad one.
    /// </summary>
    public static Compiled? For(string name)
    {
        if (name == Unconfined)
        {
            return null;
        }

        if (name is "default" or "strict" or "permissive")
        {
            // A built-in is named by its name in the disk cache, so a cached one is not even built.
            return s_cache.GetOrAdd(name, n => FromCache($"builtin:{n}", () => SeccompProfile.Builtin(n)!));
        }

        if (!name.StartsWith('/') && !name.StartsWith('.'))
        {
            throw new PolicyException("seccomp_profile", $"'{name}' is neither a built-in profile (default, strict, permissive) nor a profile file's path");
        }

        string path = Path.GetFullPath(name);
        if (!File.Exists(path))
        {
            throw new PolicyException("seccomp_profile", $"the profile file '{path}' does not exist");
        }

        // A file is compiled again whenever it changes; its content, not its path, names it on disk.
        string key = $"{path}\n{File.GetLastWriteTimeUtc(path).Ticks}";
        return s_cache.GetOrAdd(key, _ =>
        {
            SeccompProfile profile = Load(path);
            return FromCache($"file:{SeccompProfileJson.Serialize(profile)}", () => profile);
        });
    }

    private static Compiled FromCache(string identity, Func<SeccompProfile> profile)
    {
        SeccompProgramCache.Entry entry = SeccompProgramCache.GetOrCompile(identity, () =>
        {
            SeccompProfile built = profile();
            return new SeccompProgramCache.Entry(
                SeccompCompiler.Compile(built), built.UsesNotification ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0);
        });
        return new Compiled(entry.Program, entry.Flags);
    }

    private static SeccompProfile Load(string path)
    {
        string json = PolicyFile.ReadBoundedText("seccomp_profile", path);
        try
        {
            // Docker's and the OCI runtime spec's profiles start with defaultAction; ours do not.
            return json.Contains("\"defaultAction\"", StringComparison.Ordinal)
                ? SeccompProfileJson.ParseDocker(json, out _)
                : SeccompProfileJson.Parse(json);
        }
        catch (PolicyException e)
        {
            throw new PolicyException($"seccomp_profile ({path}): {e.Path}", e.Reason);
        }
    }
}
