using System.Security.Cryptography;
using System.Text;
using Confine.Native;
using Confine.Seccomp;

namespace Confine.Running;

/// <summary>
/// Compiled seccomp programs kept on disk between processes, so that a short-lived caller (the
/// <c>confine</c> command) does not pay libseccomp's few milliseconds on every run.
/// </summary>
/// <remarks>
/// A program is found by the SHA-256 of everything that decides it: the profile as JSON, the
/// libseccomp version and this build of Confine. The cache directory must belong to the caller and
/// be closed to everyone else (0700), since whoever can write a program there decides what the
/// sandbox may call; a directory that is not so, or an entry whose checksum does not match, is
/// ignored and the profile compiled afresh.
/// </remarks>
internal static class SeccompProgramCache
{
    private const string Magic = "confine-seccomp-1";

    public static byte[] GetOrCompile(SeccompProfile profile) => GetOrCompile(profile, DefaultDirectory());

    /// <summary>As <see cref="GetOrCompile(SeccompProfile)"/> with the cache in <paramref name="directory"/>, if it can be trusted.</summary>
    internal static byte[] GetOrCompile(SeccompProfile profile, string? directory)
    {
        directory = directory is null ? null : Trusted(directory);
        string key = Key(profile);
        string? path = directory is null ? null : Path.Combine(directory, key + ".bpf");
        if (path is not null && TryLoad(path) is byte[] cached)
        {
            return cached;
        }

        byte[] program = SeccompCompiler.Compile(profile);
        if (path is not null)
        {
            TryStore(path, program);
        }

        return program;
    }

    private static string Key(SeccompProfile profile)
    {
        string identity = string.Join(
            '\n',
            Magic,
            SeccompProfileJson.Serialize(profile),
            SeccompInterop.LibraryVersion(),
            typeof(SeccompProgramCache).Assembly.ManifestModule.ModuleVersionId.ToString());
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(identity)));
    }

    /// <summary>The caller's own cache directory; null when there is none.</summary>
    private static string? DefaultDirectory()
    {
        string? overridden = Environment.GetEnvironmentVariable("CONFINE_CACHE_DIR");
        string? baseDirectory = overridden ?? Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (string.IsNullOrEmpty(baseDirectory))
        {
            string? home = Environment.GetEnvironmentVariable("HOME");
            baseDirectory = Interop.geteuid() == 0 ? "/var/cache" : string.IsNullOrEmpty(home) ? null : Path.Combine(home, ".cache");
        }

        if (baseDirectory is null)
        {
            return null;
        }

        return overridden ?? Path.Combine(baseDirectory, "confine");
    }

    /// <summary><paramref name="directory"/>, created 0700 if missing, when only the caller can write it; else null.</summary>
    private static string? Trusted(string directory)
    {
        try
        {
            System.IO.Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            var info = new DirectoryInfo(directory);
            bool closedToOthers = (info.UnixFileMode & (UnixFileMode)0x3f) == 0;
            return closedToOthers && OwnedByCaller(directory) ? directory : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static bool OwnedByCaller(string path) => Posix.OwnerOf(path) == Interop.geteuid();

    private static byte[]? TryLoad(string path)
    {
        try
        {
            byte[] content = File.ReadAllBytes(path);
            if (content.Length < 32 || (content.Length - 32) % 8 != 0 || !OwnedByCaller(path))
            {
                return null;
            }

            byte[] program = content[32..];
            return SHA256.HashData(program).AsSpan().SequenceEqual(content.AsSpan(0, 32)) ? program : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static void TryStore(string path, byte[] program)
    {
        string temporary = $"{path}.{Environment.ProcessId}.tmp";
        try
        {
            using (var file = new FileStream(temporary, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            }))
            {
                file.Write(SHA256.HashData(program));
                file.Write(program);
            }

            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A cache that cannot be written only costs the next process a compile.
            File.Delete(temporary);
        }
    }
}
