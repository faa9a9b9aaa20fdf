using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Confine.Native;
using Confine.Seccomp;

namespace Confine.Running;

/// <summary>
/// Compiled seccomp programs kept on disk between processes, so that a short-lived caller (the
/// <c>confine</c> command) does not pay for building and compiling a profile on every run.
/// </summary>
/// <remarks>
/// A program is found by the SHA-256 of everything that decides it: the profile (a built-in's name,
/// or a file profile's JSON), the libseccomp version and this build of Confine. The cache directory
/// must belong to the caller and be closed to everyone else (0700), since whoever can write a
/// program there decides what the sandbox may call; a directory that is not so, or an entry whose
/// checksum does not match, is ignored and the profile compiled afresh.
///
/// Only root keeps a cache. A sandbox started by an ordinary user runs as that user on the host, so
/// anything the user can write, a sandbox given a writable bind of it can rewrite too, checksum
/// and all, and the next run would load an allow-everything program. A sandbox started by root runs
/// as unprivileged host ids that cannot write root's 0700 directory.
/// </remarks>
internal static class SeccompProgramCache
{
    private const string Magic = "confine-seccomp-2";

    /// <summary>A compiled program and the flags it must be loaded with.</summary>
    public readonly record struct Entry(byte[] Program, uint Flags);

    /// <summary>The program for <paramref name="identity"/>, compiled by <paramref name="compile"/> when not cached.</summary>
    public static Entry GetOrCompile(string identity, Func<Entry> compile) => GetOrCompile(identity, compile, DefaultDirectory());

    internal static Entry GetOrCompile(string identity, Func<Entry> compile, string? directory)
    {
        directory = directory is null ? null : Trusted(directory);
        string? path = directory is null ? null : Path.Combine(directory, Key(identity) + ".bpf");
        if (path is not null && TryLoad(path) is Entry cached)
        {
            return cached;
        }

        Entry entry = compile();
        if (path is not null)
        {
            TryStore(path, entry);
        }

        return entry;
    }

    private static string Key(string identity)
    {
        string full = string.Join(
            '\n',
            Magic,
            identity,
            SeccompInterop.LibraryVersion(),
            typeof(SeccompProgramCache).Assembly.ManifestModule.ModuleVersionId.ToString());
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(full)));
    }

    /// <summary>The caller's own cache directory; null when there is none, or the caller is not root.</summary>
    private static string? DefaultDirectory()
    {
        if (Interop.geteuid() != 0)
        {
            return null;
        }

        string? overridden = Environment.GetEnvironmentVariable("CONFINE_CACHE_DIR");
        if (!string.IsNullOrEmpty(overridden))
        {
            return overridden;
        }

        string? baseDirectory = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        return Path.Combine(string.IsNullOrEmpty(baseDirectory) ? "/var/cache" : baseDirectory, "confine");
    }

    /// <summary><paramref name="directory"/>, created 0700 if missing, when only the caller can write it; else null.</summary>
    private static string? Trusted(string directory)
    {
        try
        {
            Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            bool closedToOthers = (new DirectoryInfo(directory).UnixFileMode & (UnixFileMode)0x3f) == 0;
            return closedToOthers && OwnedByCaller(directory) ? directory : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static bool OwnedByCaller(string path) => Posix.OwnerOf(path) == Interop.geteuid();

    // Layout: SHA-256 of the rest, then the load flags (u32, little-endian), then the program.
    private static Entry? TryLoad(string path)
    {
        try
        {
            byte[] content = File.ReadAllBytes(path);
            if (content.Length < 36 || (content.Length - 36) % 8 != 0 || !OwnedByCaller(path)
                || !SHA256.HashData(content.AsSpan(32)).AsSpan().SequenceEqual(content.AsSpan(0, 32)))
            {
                return null;
            }

            return new Entry(content[36..], BinaryPrimitives.ReadUInt32LittleEndian(content.AsSpan(32)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static void TryStore(string path, Entry entry)
    {
        byte[] body = new byte[4 + entry.Program.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(body, entry.Flags);
        entry.Program.CopyTo(body, 4);
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
                file.Write(SHA256.HashData(body));
                file.Write(body);
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
