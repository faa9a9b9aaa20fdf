using System.Diagnostics;

namespace Confine.Tests.Cli;

/// <summary>A fact about the NativeAOT <c>confine</c> that scripts/setup.sh publishes; skipped, saying so, without it.</summary>
public sealed class PublishedCliFactAttribute : FactAttribute
{
    public PublishedCliFactAttribute()
    {
        if (!File.Exists(PublishedCliTests.Executable))
        {
            Skip = $"the NativeAOT confine is not published at {PublishedCliTests.Executable} (scripts/setup.sh publishes it)";
        }
    }
}

/// <summary>
/// What only the published command does differently from the JIT-compiled one the other CLI tests
/// run: compiled ahead of time, it names its seccomp cache entries by its executable's stamp.
/// </summary>
[Trait("Category", "Cli")]
public sealed class PublishedCliTests
{
    internal static string Executable =>
        Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../artifacts/confine/confine"));

    [PublishedCliFact]
    public void Run_Twice_CompilesTheProfileOnceAndKeepsOneEntry()
    {
        string cache = Path.Combine(Path.GetTempPath(), $"confine-aot-cache-{Guid.NewGuid():N}");
        try
        {
            Run(cache);
            string[] first = Directory.GetFiles(cache, "*.bpf");
            string entry = Path.GetFileName(Assert.Single(first));

            // Built-in name, libseccomp stamp, build stamp: 16 hex digits each, not a module's GUID.
            Assert.Matches("^confine-seccomp-4_builtin_default_[0-9a-f]{16}_[0-9a-f]{16}\\.bpf$", entry);
            DateTime written = File.GetLastWriteTimeUtc(first[0]);

            Run(cache);
            Assert.Equal(first, Directory.GetFiles(cache, "*.bpf"));
            Assert.Equal(written, File.GetLastWriteTimeUtc(first[0]));
        }
        finally
        {
            if (Directory.Exists(cache))
            {
                Directory.Delete(cache, recursive: true);
            }
        }
    }

    private static void Run(string cache)
    {
        var info = new ProcessStartInfo(Executable) { UseShellExecute = false, RedirectStandardError = true };
        foreach (string argument in (string[])["run", "--", "/bin/true"])
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment["CONFINE_CACHE_DIR"] = cache;
        using Process process = Process.Start(info)!;
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {stderr}");
    }
}
