using System.Buffers.Binary;
using System.Runtime.CompilerServices;
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
/// A program is found by everything that decides it: the profile (a built-in's name, or a file
/// profile's JSON), the libseccomp that compiles it and this build of Confine. A short plain identity (a
/// built-in's) names the file as it is; any other is named by its SHA-256, so that a profile file
/// cannot be written to collide with another profile's entry. The cache directory must belong to the
/// caller and be closed to everyone else (0700), since whoever can write a program there decides
/// what the sandbox may call; a directory that is not so, or an entry whose checksum does not
/// match, is ignored and the profile compiled afresh.
///
/// Only root keeps a cache. A sandbox started by an ordinary user runs as that user on the host, so
/// anything the user can write, a sandbox given a writable bind of it can rewrite too, checksum
/// and all, and the next run would load an allow-everything program. A sandbox started by root runs
/// as unprivileged host ids that cannot write root's 0700 directory.
/// </remarks>
internal static class SeccompProgramCache
{
    private const string Magic = "confine-seccomp-4";

    /// <summary>
    /// The dynamic loader's own directories for x86_64 (the only architecture Confine filters for),
    /// Debian's multiarch first, and /usr/local's, which most distributions configure.
    /// </summary>
    private static readonly string[] s_libraryDirectories =
    [
        "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
        "/usr/local/lib/x86_64-linux-gnu", "/usr/local/lib", "/usr/local/lib64",
    ];

    /// <summary>A compiled program and the flags it must be loaded with.</summary>
    public readonly record struct Entry(byte[] Program, uint Flags);

    /// <summary>The program for <paramref name="identity"/>, compiled by <paramref name="compile"/> when not cached.</summary>
    public static Entry GetOrCompile(string identity, Func<Entry> compile) => GetOrCompile(identity, compile, DefaultDirectory());

    internal static Entry GetOrCompile(string identity, Func<Entry> compile, string? directory)
    {
        directory = directory is null ? null : Trusted(directory);
        string? path = directory is null ? null : Path.Combine(directory, FileName(identity));
        if (path is not null && TryLoad(path) is Entry cached)
        {
            return cached;
        }

        Entry entry = compile();

        // Only an entry that can name the library that compiled it is kept: a hit checks that file.
        if (path is not null && SeccompInterop.LoadedLibraryPath() is string library)
        {
            TryStore(path, entry, LibraryRecord(library));
            RemoveOtherVersions(directory!, identity, path);
        }

        return entry;
    }

    /// <summary>
    /// What an entry records of the libseccomp that compiled it: its path and its stamp. The file
    /// name's stamp covers where the loader looks; this covers the file it found, wherever that was
    /// (a directory known only to the loader's configuration, say), so a library replaced in place
    /// is noticed even when nothing else changed.
    /// </summary>
    internal static string LibraryRecord(string library) => $"{library}\n{Posix.VersionStamp(library)}";

    /// <summary>
    /// Removes the entries that earlier builds, libraries or loader caches left for a built-in
    /// profile, so that the directory holds one per profile. A file profile's entries are named by a
    /// hash that hides which profile they are for, and stay.
    /// </summary>
    private static void RemoveOtherVersions(string directory, string identity, string current)
    {
        if (!IsPlain(identity))
        {
            return;
        }

        try
        {
            foreach (string other in Directory.EnumerateFiles(directory, $"{Magic}_{identity.Replace(':', '_')}_*.bpf"))
            {
                if (other != current)
                {
                    File.Delete(other);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // An old entry left behind only takes space.
        }
    }

    /// <summary>
    /// The entry's file name. SHA-256 is only computed for identities that need it: on Linux it
    /// loads OpenSSL, about 3 ms of a short-lived caller's start, more than the rest of a cache hit.
    /// </summary>
    internal static string FileName(string identity)
    {
        string version = LibseccompStamp(Environment.GetEnvironmentVariable("LD_LIBRARY_PATH"));
        string build = BuildIdentity();
        if (IsPlain(identity))
        {
            // No two identities share a name: a plain one has one ':' and no '_', and a hashed name has one '_'.
            return $"{Magic}_{identity.Replace(':', '_')}_{version}_{build}.bpf";
        }

        string full = string.Join('\n', Magic, identity, version, build);
        return $"{Magic}_{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(full)))}.bpf";
    }

    /// <summary>
    /// Stands for this build of Confine: the module's version id, or, compiled ahead of time, the
    /// executable's own stamp, since there reading the id starts the reflection metadata, about a
    /// fifth of a millisecond of a short run. A rebuilt or reinstalled executable is a new file.
    /// </summary>
    private static string BuildIdentity() => RuntimeFeature.IsDynamicCodeSupported
        ? typeof(SeccompProgramCache).Assembly.ManifestModule.ModuleVersionId.ToString("N")
        : Checksum(Encoding.UTF8.GetBytes(Posix.VersionStamp(Environment.ProcessPath ?? "/proc/self/exe")))
            .ToString("x16", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Stands for the libseccomp a compile would load, without loading it: on a cache hit, loading it
    /// (the dynamic loader's search, mapping and relocation, and .NET's resolution around it) cost a
    /// short run more than the rest of the lookup. The stamp covers every file the loader could pick
    /// for the name (beside the executable, in LD_LIBRARY_PATH, in the usual library directories) and
    /// the loader's cache, which names the file found in any other configured directory: a library
    /// added, replaced or upgraded, or a run of ldconfig (which every library package runs), changes
    /// it, and the profile is compiled afresh by the library now in place.
    /// </summary>
    internal static string LibseccompStamp(string? libraryPath)
    {
        const string Name = SeccompInterop.LibSeccomp;
        var files = new List<string> { Path.Join(AppContext.BaseDirectory, Name) };
        if (!string.IsNullOrEmpty(libraryPath))
        {
            // The loader reads an empty entry as the working directory.
            foreach (string directory in libraryPath.Split(':'))
            {
                files.Add(Path.Join(directory.Length == 0 ? Directory.GetCurrentDirectory() : directory, Name));
            }
        }

        files.Add("/etc/ld.so.cache");
        foreach (string directory in s_libraryDirectories)
        {
            files.Add(Path.Join(directory, Name));
        }

        var stamp = new StringBuilder();
        foreach (string file in files)
        {
            stamp.Append(file).Append('=').Append(Posix.VersionStamp(file)).Append('\n');
        }

        return Checksum(Encoding.UTF8.GetBytes(stamp.ToString())).ToString("x16", System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Whether <paramref name="identity"/> is <c>kind:name</c> in lower-case letters, digits, dashes.</summary>
    private static bool IsPlain(string identity)
    {
        int colon = identity.IndexOf(':');
        return colon > 0 && colon < identity.Length - 1 && identity.Length <= 64
            && identity.AsSpan(0, colon).IndexOfAnyExcept("abcdefghijklmnopqrstuvwxyz") < 0
            && identity.AsSpan(colon + 1).IndexOfAnyExcept("abcdefghijklmnopqrstuvwxyz0123456789-") < 0;
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

    /// <summary>
    /// The checksum an entry starts with: 64-bit FNV-1a of the rest. It only has to catch an entry
    /// that was cut short or damaged, not one written on purpose: whoever can write the directory can
    /// write any checksum, which is why the directory itself must be the caller's alone.
    /// </summary>
    internal static ulong Checksum(ReadOnlySpan<byte> data)
    {
        ulong hash = 0xcbf29ce484222325;
        foreach (byte b in data)
        {
            hash = (hash ^ b) * 0x100000001b3;
        }

        return hash;
    }

    // Layout, little-endian: the checksum of the rest (u64), the load flags (u32), the length of the
    // library record (u32), the library record (UTF-8, see LibraryRecord), then the program.
    private const int HeaderSize = 16;

    private static Entry? TryLoad(string path)
    {
        try
        {
            byte[] content = File.ReadAllBytes(path);
            if (content.Length < HeaderSize || !OwnedByCaller(path)
                || Checksum(content.AsSpan(8)) != BinaryPrimitives.ReadUInt64LittleEndian(content))
            {
                return null;
            }

            uint recordLength = BinaryPrimitives.ReadUInt32LittleEndian(content.AsSpan(12));
            if (recordLength > content.Length - HeaderSize || (content.Length - HeaderSize - recordLength) % 8 != 0)
            {
                return null;
            }

            // The library that compiled it must still be the same file.
            string record = Encoding.UTF8.GetString(content, HeaderSize, (int)recordLength);
            int newline = record.IndexOf('\n');
            if (newline <= 0 || LibraryRecord(record[..newline]) != record)
            {
                return null;
            }

            return new Entry(content[(HeaderSize + (int)recordLength)..], BinaryPrimitives.ReadUInt32LittleEndian(content.AsSpan(8)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    internal static void TryStore(string path, Entry entry, string libraryRecord)
    {
        byte[] record = Encoding.UTF8.GetBytes(libraryRecord);
        byte[] content = new byte[HeaderSize + record.Length + entry.Program.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(content.AsSpan(8), entry.Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(content.AsSpan(12), (uint)record.Length);
        record.CopyTo(content, HeaderSize);
        entry.Program.CopyTo(content, HeaderSize + record.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(content, Checksum(content.AsSpan(8)));
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
                file.Write(content);
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
