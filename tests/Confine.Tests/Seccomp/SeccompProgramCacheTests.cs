using System.Buffers.Binary;
using Confine.Running;
using Confine.Seccomp;

namespace Confine.Tests.Seccomp;

/// <summary>The on-disk cache of compiled programs: used only when it is private and intact.</summary>
public sealed class SeccompProgramCacheTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), $"confine-cache-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    /// <summary>The cache trusts only a directory closed to everyone but its owner.</summary>
    private void CreatePrivateDirectory() =>
        Directory.CreateDirectory(_directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

    private static SeccompProgramCache.Entry Compile(SeccompProfile profile) => new(SeccompCompiler.Compile(profile), 8);

    [Fact]
    public void GetOrCompile_SecondCall_LoadsTheSameProgramFromDisk()
    {
        int compiles = 0;
        SeccompProgramCache.Entry first = SeccompProgramCache.GetOrCompile("test:strict", () => { compiles++; return Compile(SeccompProfile.Strict); }, _directory);
        string entry = Assert.Single(Directory.GetFiles(_directory, "*.bpf"));
        SeccompProgramCache.Entry second = SeccompProgramCache.GetOrCompile("test:strict", () => { compiles++; return Compile(SeccompProfile.Strict); }, _directory);
        Assert.Equal(1, compiles);
        Assert.Equal(first.Program, second.Program);
        Assert.Equal(8u, second.Flags);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(entry));
    }

    [Fact]
    public void GetOrCompile_PlainAndOtherIdentities_GetSeparateEntries()
    {
        SeccompProgramCache.GetOrCompile("builtin:strict", () => Compile(SeccompProfile.Strict), _directory);
        SeccompProgramCache.GetOrCompile("file:{\"builtin:strict\"}", () => Compile(SeccompProfile.Default), _directory);
        string[] names = [.. Directory.GetFiles(_directory, "*.bpf").Select(p => Path.GetFileName(p)).Order()];
        Assert.Equal(2, names.Length);
        Assert.Contains(names, n => n.Contains("_builtin_strict_", StringComparison.Ordinal));
        Assert.Contains(names, n => n.Count(c => c == '_') == 1);
    }

    [Fact]
    public void LibseccompStamp_ChangesWhenALibraryTheLoaderCouldPickAppearsOrChanges()
    {
        Directory.CreateDirectory(_directory);
        string before = SeccompProgramCache.LibseccompStamp(_directory);
        Assert.Equal(before, SeccompProgramCache.LibseccompStamp(_directory));

        string library = Path.Combine(_directory, "libseccomp.so.2");
        File.WriteAllText(library, "one");
        string added = SeccompProgramCache.LibseccompStamp(_directory);
        Assert.NotEqual(before, added);

        File.Delete(library);
        File.WriteAllText(library, "a replacement");
        Assert.NotEqual(added, SeccompProgramCache.LibseccompStamp(_directory));
    }

    [Fact]
    public void GetOrCompile_EntryOfALibraryReplacedSince_IsCompiledAfresh()
    {
        // An entry records the library that compiled it; here a stand-in file, so that it can be replaced.
        CreatePrivateDirectory();
        string library = Path.Combine(_directory, "libseccomp-stand-in.so");
        File.WriteAllText(library, "before");
        string entryPath = Path.Combine(_directory, SeccompProgramCache.FileName("test:strict"));
        SeccompProgramCache.TryStore(entryPath, Compile(SeccompProfile.Strict), SeccompProgramCache.LibraryRecord(library));

        int compiles = 0;
        SeccompProgramCache.GetOrCompile("test:strict", () => { compiles++; return Compile(SeccompProfile.Strict); }, _directory);
        Assert.Equal(0, compiles);

        File.Delete(library);
        File.WriteAllText(library, "after, and longer");
        SeccompProgramCache.GetOrCompile("test:strict", () => { compiles++; return Compile(SeccompProfile.Strict); }, _directory);
        Assert.Equal(1, compiles);
    }

    [Fact]
    public void GetOrCompile_NewEntryForABuiltIn_RemovesThoseOfEarlierVersions()
    {
        CreatePrivateDirectory();
        string stale = Path.Combine(_directory, "confine-seccomp-4_builtin_strict_0000000000000000_old.bpf");
        string otherProfile = Path.Combine(_directory, "confine-seccomp-4_builtin_default_0000000000000000_old.bpf");
        File.WriteAllText(stale, "from an earlier build");
        File.WriteAllText(otherProfile, "another profile's");

        SeccompProgramCache.GetOrCompile("builtin:strict", () => Compile(SeccompProfile.Strict), _directory);

        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(otherProfile));
        Assert.Single(Directory.GetFiles(_directory, "confine-seccomp-4_builtin_strict_*.bpf"));
    }

    [Fact]
    public void GetOrCompile_TamperedEntry_IsIgnoredAndCompiledAfresh()
    {
        SeccompProgramCache.Entry genuine = SeccompProgramCache.GetOrCompile("test:default", () => Compile(SeccompProfile.Default), _directory);
        string entry = Assert.Single(Directory.GetFiles(_directory, "*.bpf"));

        // A corrupted entry: its checksum no longer matches.
        byte[] content = File.ReadAllBytes(entry);
        content[^1] ^= 0xff;
        File.WriteAllBytes(entry, content);
        Assert.Equal(genuine.Program, SeccompProgramCache.GetOrCompile("test:default", () => Compile(SeccompProfile.Default), _directory).Program);

        // An allow-everything program with a valid checksum, in a directory others could write.
        byte[] forged = [0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0xff, 0x7f];
        byte[] checksum = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(checksum, SeccompProgramCache.Checksum(forged));
        File.WriteAllBytes(entry, [.. checksum, .. forged]);
        File.SetUnixFileMode(_directory, (UnixFileMode)0x1ff);
        Assert.Equal(genuine.Program, SeccompProgramCache.GetOrCompile("test:default", () => Compile(SeccompProfile.Default), _directory).Program);
    }
}
