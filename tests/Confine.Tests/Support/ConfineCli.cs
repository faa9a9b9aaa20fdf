using System.Diagnostics;

namespace Confine.Tests.Support;

/// <summary>The result of one <c>confine</c> invocation.</summary>
internal sealed record CliResult(int ExitCode, string Stdout, string Stderr);

/// <summary>
/// Runs the real <c>confine</c> command as a separate process, as root or dropped to an
/// unprivileged user with setpriv, to test the command line and the rootless paths end to end.
/// </summary>
internal static class ConfineCli
{
    /// <summary>The unprivileged ids rootless tests run under ("nobody" on Debian).</summary>
    public const int UnprivilegedId = 65534;

    internal static string CliAssembly => Path.Combine(AppContext.BaseDirectory, "Confine.Cli.dll");

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

        if (unprivileged)
        {
            info.FileName = "setpriv";
            foreach (string a in (string[])[$"--reuid={UnprivilegedId}", $"--regid={UnprivilegedId}", "--clear-groups", "--"])
            {
                info.ArgumentList.Add(a);
            }

            info.ArgumentList.Add(DotnetHost);
            info.Environment["HOME"] = "/tmp";
            info.Environment["DOTNET_CLI_HOME"] = "/tmp";
        }
        else if (newProcessGroup)
        {
            info.FileName = "setsid";
            info.ArgumentList.Add(DotnetHost);
        }
        else
        {
            info.FileName = DotnetHost;
        }

        info.ArgumentList.Add(CliAssembly);
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        return Process.Start(info) ?? throw new InvalidOperationException("confine did not start");
    }

    internal static string DotnetHost => Environment.ProcessPath is string path && Path.GetFileName(path) == "dotnet"
        ? path
        : "dotnet";
}
