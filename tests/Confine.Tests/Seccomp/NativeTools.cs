using System.Collections.Concurrent;
using System.Diagnostics;

namespace Confine.Tests.Seccomp;

/// <summary>Compiles the tests' small C programs with cc into a temporary folder and runs programs.</summary>
internal static class NativeTools
{
    private static readonly Lazy<string> s_directory = new(() =>
    {
        string directory = Directory.CreateTempSubdirectory("confine-seccomp-tests-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
            }
        };
        return directory;
    });

    private static readonly ConcurrentDictionary<string, Lazy<string>> s_built = new();

    /// <summary>The folder the tests build and write into; removed when the test process ends.</summary>
    public static string WorkDirectory => s_directory.Value;

    /// <summary>Whether a C compiler is installed.</summary>
    public static bool HasCompiler => File.Exists("/usr/bin/cc");

    /// <summary>The seccomp test loader, built once per run.</summary>
    public static string Probe => Build("seccomp-probe.c");

    /// <summary>Builds <paramref name="source"/> (from the test output's Seccomp/native) once; returns the executable.</summary>
    public static string Build(string source, params string[] extraArguments) =>
        s_built.GetOrAdd(source + string.Join(' ', extraArguments), _ => new Lazy<string>(() =>
        {
            string input = Path.Combine(AppContext.BaseDirectory, "Seccomp", "native", source);
            string output = Path.Combine(WorkDirectory, Path.GetFileNameWithoutExtension(source));
            var result = Run("/usr/bin/cc", ["-std=gnu11", "-O1", "-Wall", "-Wextra", "-Werror", .. extraArguments, "-o", output, input]);
            if (result.ExitCode != 0)
            {
                throw new InvalidOperationException($"cc {source} failed ({result.ExitCode}): {result.Stderr}");
            }

            return output;
        })).Value;

    /// <summary>Runs a program to its end (at most 60 s) and returns its exit code and output.</summary>
    public static (int ExitCode, string Stdout, string Stderr) Run(string file, IEnumerable<string> arguments)
    {
        ProcessStartInfo start = new(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {file}");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not finish in 60 s");
        }

        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Writes <paramref name="bytes"/> to a new file in the work folder and returns its path.</summary>
    public static string WriteTemporary(byte[] bytes, string extension)
    {
        string path = Path.Combine(WorkDirectory, $"{Guid.NewGuid():N}{extension}");
        File.WriteAllBytes(path, bytes);
        return path;
    }
}

/// <summary>A fact that is skipped, with a reason, when no C compiler is installed.</summary>
public sealed class NativeFactAttribute : FactAttribute
{
    public NativeFactAttribute()
    {
        if (!NativeTools.HasCompiler)
        {
            Skip = "no C compiler (/usr/bin/cc) to build the test programs";
        }
    }
}

/// <summary>A theory that is skipped, with a reason, when no C compiler is installed.</summary>
public sealed class NativeTheoryAttribute : TheoryAttribute
{
    public NativeTheoryAttribute()
    {
        if (!NativeTools.HasCompiler)
        {
            Skip = "no C compiler (/usr/bin/cc) to build the test programs";
        }
    }
}
