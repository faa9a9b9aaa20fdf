using System.Security.Cryptography;
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

    [Fact]
    public void GetOrCompile_SecondCall_LoadsTheSameProgramFromDisk()
    {
        byte[] first = SeccompProgramCache.GetOrCompile(SeccompProfile.Strict, _directory);
        string entry = Assert.Single(Directory.GetFiles(_directory, "*.bpf"));
        Assert.Equal(first, SeccompProgramCache.GetOrCompile(SeccompProfile.Strict, _directory));
        Assert.Equal(SeccompCompiler.Compile(SeccompProfile.Strict), first);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(entry));
    }

    [Fact]
    public void GetOrCompile_TamperedEntry_IsIgnoredAndReplaced()
    {
        byte[] genuine = SeccompProgramCache.GetOrCompile(SeccompProfile.Default, _directory);
        string entry = Assert.Single(Directory.GetFiles(_directory, "*.bpf"));

        // An allow-everything program with a checksum that does not match it.
        byte[] content = File.ReadAllBytes(entry);
        content[^1] ^= 0xff;
        File.WriteAllBytes(entry, content);
        Assert.Equal(genuine, SeccompProgramCache.GetOrCompile(SeccompProfile.Default, _directory));

        // A program with a matching checksum in a directory others could write: not trusted either.
        byte[] forged = new byte[8];
        File.WriteAllBytes(entry, [.. SHA256.HashData(forged), .. forged]);
        File.SetUnixFileMode(_directory, (UnixFileMode)0x1ff);
        Assert.Equal(genuine, SeccompProgramCache.GetOrCompile(SeccompProfile.Default, _directory));
    }
}
