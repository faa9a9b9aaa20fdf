using System.Diagnostics;

namespace Confine.Tests.Support;

/// <summary>The result of one <c>confine</c> invocation.</summary>
internal sealed record CliResult(int ExitCode, string Stdout, string Stderr);

/// <summary>
/// Runs the real <c>confine</c> command as a separate process, as root or dropped to an
/// unprivileged user with setpriv, to test the command line and the rootless paths end to end.
/// That is the JIT-compiled command beside the tests, or, when CONFINE_TEST_PUBLISHED_CLI names
/// one, a NativeAOT-published command: scripts/test.sh runs the command-line tests a second time
/// on the one it publishes, which starts its helper before its runtime (native/confine-prestart.c).
/// </summary>
internal static class ConfineCli
{
    /// <summary>The unprivileged ids rootless tests run under ("nobody" on Debian).</summary>
    public const int UnprivilegedId = 65534;

    internal static string CliAssembly => Path.Combine(AppContext.BaseDirectory, "Confine.Cli.dll");

    /// <summary>The published command the tests run instead of the JIT-compiled one, if any.</summary>
    internal static string? PublishedCommand =>
        Environment.GetEnvironmentVariable("CONFINE_TEST_PUBLISHED_CLI") is { Length: > 0 } path ? Path.GetFullPath(path) : null;

    public static CliResult Run(IEnumerable<string> arguments, bool unprivileged = false, string? stdin = null, TimeSpan? timeout = null)
    {
        using Process process = Start(arguments, unprivileged, stdin is not null);
        if (stdin is not null)
        {
            process.StandardInput.Write(stdin);
            process.StandardInput.Close();
        }

        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout ?? TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"confine {string.Join(' ', arguments)} did not finish");
        }

        return new CliResult(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <param name="newProcessGroup">
    /// Start it through setsid(1), which execs it as the leader of a session and process group of its
    /// own, so that a test can signal the group as a terminal's ^C does.
    /// </param>
    public static Process Start(IEnumerable<string> arguments, bool unprivileged = false, bool redirectStdin = false, bool newProcessGroup = false)
    {
        var info = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = redirectStdin,
            UseShellExecute = false,
            WorkingDirectory = "/tmp",
        };

        var command = new List<string>();
        if (unprivileged)
        {
            command.AddRange(["setpriv", $"--reuid={UnprivilegedId}", $"--regid={UnprivilegedId}", "--clear-groups", "--"]);
            info.Environment["HOME"] = "/tmp";
            info.Environment["DOTNET_CLI_HOME"] = "/tmp";
        }
        else if (newProcessGroup)
        {
            command.Add("setsid");
        }

        command.AddRange(CommandPrefix);
        command.AddRange(arguments);
        info.FileName = command[0];
        foreach (string argument in command.Skip(1))
        {
            info.ArgumentList.Add(argument);
        }

        return Process.Start(info) ?? throw new InvalidOperationException("confine did not start");
    }

    /// <summary>The program and the arguments that start the command under test, before its own arguments.</summary>
    internal static string[] CommandPrefix => PublishedCommand is string published ? [published] : [DotnetHost, CliAssembly];

    internal static string DotnetHost => Environment.ProcessPath is string path && Path.GetFileName(path) == "dotnet"
        ? path
        : "dotnet";
}
