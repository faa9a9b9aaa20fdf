using System.Diagnostics;
using System.Globalization;
using Confine.Cgroups;
using Confine.Native;

namespace Confine.Tests.Cgroups;

/// <summary>
/// A shell workload that waits on its standard input until it has been put into a sandbox's
/// cgroups, as the helper will do with the sandbox's init, so nothing it runs escapes the limits.
/// </summary>
internal sealed class Workload : IDisposable
{
    private readonly Process _process;

    private Workload(Process process) => _process = process;

    /// <summary>Starts <c>sh -c 'read x; SCRIPT'</c>; the script's output goes to /dev/null.</summary>
    public static Workload Start(string script)
    {
        var start = new ProcessStartInfo("/bin/sh")
        {
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add("exec >/dev/null 2>&1; read x; " + script);
        return new Workload(Process.Start(start)!);
    }

    /// <summary>The shell's pid.</summary>
    public int Pid => _process.Id;

    /// <summary>The shell's exit code; 128 + N when signal N ended it.</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>Whether the shell has exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>
    /// Writes the shell's pid into every <c>cgroup.procs</c> of <paramref name="cgroup"/>, checks it
    /// is listed there, then lets the script run.
    /// </summary>
    public void JoinAndRelease(SandboxCgroup cgroup)
    {
        Assert.NotEmpty(cgroup.ProcsFiles);
        string pid = Pid.ToString(CultureInfo.InvariantCulture);
        foreach (string procs in cgroup.ProcsFiles)
        {
            Assert.Equal(Interop.Error.None, CgroupFiles.Write(procs, pid));
            Assert.Contains(Pid, CgroupFiles.ReadPids(procs));
        }

        _process.StandardInput.WriteLine("go");
        _process.StandardInput.Flush();
    }

    /// <summary>Waits for the shell to exit.</summary>
    public bool WaitForExit(int milliseconds) => _process.WaitForExit(milliseconds);

    /// <summary>Kills the shell and whatever it started, if a test stopped early.</summary>
    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(2000);
            }
        }
        catch (InvalidOperationException)
        {
            // It exited meanwhile.
        }

        _process.Dispose();
    }
}
