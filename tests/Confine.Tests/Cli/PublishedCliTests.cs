using System.Diagnostics;
using Confine.Tests.Support;

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

/// <summary>A theory about the published confine, skipped like <see cref="PublishedCliFactAttribute"/> without it.</summary>
public sealed class PublishedCliTheoryAttribute : TheoryAttribute
{
    public PublishedCliTheoryAttribute()
    {
        if (!File.Exists(PublishedCliTests.Executable))
        {
            Skip = $"the NativeAOT confine is not published at {PublishedCliTests.Executable} (scripts/setup.sh publishes it)";
        }
    }
}

/// <summary>
/// What only the published command does differently from the JIT-compiled one the other CLI tests
/// run: compiled ahead of time, it names its seccomp cache entries by its executable's stamp, and
/// it starts its helper before its runtime. And what is measured on the command as people run it:
/// which threads a run starts in it.
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

    [PublishedCliFact]
    public void Run_OneCommand_StartsNoIoOrThreadPoolThread()
    {
        // The command is told apart from every other process by a fraction of a second of its own.
        string seconds = $"1.{Random.Shared.Next(100000, 999999)}";
        var info = new ProcessStartInfo(Executable)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in (string[])["run", "--", "/bin/sleep", seconds])
        {
            info.ArgumentList.Add(argument);
        }

        // Both streams are drained, so that a full pipe cannot stall the command.
        using Process process = Process.Start(info)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();

        // The I/O loop's thread would start when the run registers its first pipe, and a pool thread
        // at the latest when the run ends: the names are sampled from start to exit, and some samples
        // must fall while the command runs, or the test has not watched the run at all.
        var names = new HashSet<string>(StringComparer.Ordinal);
        int samplesWhileRunning = 0;
        var clock = Stopwatch.StartNew();
        while (!process.HasExited && clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            bool running = SandboxTesting.HostProcessesWith(seconds, "/bin/sleep").Count == 1;
            names.UnionWith(ThreadNames(process.Id));
            if (running && !process.HasExited)
            {
                samplesWhileRunning++;
            }

            Thread.Sleep(10);
        }

        Assert.True(process.WaitForExit(20_000), "confine did not end");
        Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {stdout.Result}{stderr.Result}");
        Assert.True(samplesWhileRunning > 0, "no sample of confine's threads was taken while the command ran");
        Assert.Contains("confine", names);
        Assert.DoesNotContain("Confine I/O", names);
        Assert.DoesNotContain(".NET TP Worker", names);
    }

    [PublishedCliFact]
    public void Run_HelperIsStartedBeforeTheRuntime_AndGetsItsPlanOnAPipe()
    {
        using var wrapper = new HelperWrapper();
        (int code, string stdout, string stderr) = RunWith(wrapper, "run", "--", "/bin/echo", "hi");

        Assert.True(code == 0, $"exit {code}: {stderr}");
        Assert.Equal("hi\n", stdout);
        // A helper spawned by the library would get a memfd ("/memfd:confine-setup-plan").
        Assert.StartsWith("pipe:[", wrapper.PlanDescriptor);
    }

    [PublishedCliTheory]
    [InlineData("run", "--no-such-option", "--", "/bin/true")]
    [InlineData("run", "--memory", "1x", "--", "/bin/true")]
    [InlineData("run", "--help")]
    public void Run_NotRunningASandbox_EndsTheHelperStartedForIt(params string[] arguments)
    {
        using var wrapper = new HelperWrapper();
        (int code, _, string stderr) = RunWith(wrapper, arguments);

        Assert.True(arguments.Contains("--help") ? code == 0 : code == 2, $"exit {code}: {stderr}");
        int helper = wrapper.HelperPid;
        Assert.False(Directory.Exists($"/proc/{helper}"), $"the helper {helper} outlived the command");
        // Its init, cloned ahead of a plan that never came, runs the same binary.
        Assert.Empty(ProcessesRunning(wrapper.Helper));
    }

    [PublishedCliFact]
    public void Run_StartedWithItsStandardStreamsClosed_GivesTheCommandNoneOfItsOwn()
    {
        // Closed, the numbers 0 and 2 would go to the first descriptors the command opens, the
        // helper's pipes among them: the sandbox read what it wrote to stderr, and a closed stdin
        // never ended.
        (int code, string stdout, string stderr) = RunThroughShell(
            "exec \"$0\" run -- /bin/sh -c 'echo secret >&2; read x; echo \"got[$x]\"; cat' <&- 2>&-");

        Assert.True(code == 0, $"exit {code}: {stderr}");
        Assert.Equal("got[]\n", stdout);
    }

    [PublishedCliTheory]
    [InlineData(0, "run", "--", "/bin/echo", "ok")]
    [InlineData(2, "run", "--no-such-option", "--", "/bin/true")]
    [InlineData(0, "run", "--help")]
    public void Run_StartedWithSigchldIgnored_StillReapsItsHelper(int expected, params string[] arguments)
    {
        // An ignored SIGCHLD survives execve and makes the kernel reap children itself, so no
        // waitpid would find the helper.
        var info = new ProcessStartInfo("/usr/bin/python3")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in (string[])
            ["-c", "import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])", Executable, .. arguments])
        {
            info.ArgumentList.Add(argument);
        }

        (int code, string stdout, string stderr) = Finish(info);
        Assert.True(code == expected, $"exit {code}: {stderr}");
        if (arguments[^1] == "ok")
        {
            Assert.Equal("ok\n", stdout);
        }
    }

    private static (int Code, string Stdout, string Stderr) RunThroughShell(string script)
    {
        var info = new ProcessStartInfo("/bin/sh")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in (string[])["-c", script, Executable])
        {
            info.ArgumentList.Add(argument);
        }

        return Finish(info);
    }

    /// <summary>Starts <paramref name="info"/> (both streams redirected) and waits for its end and its output.</summary>
    private static (int Code, string Stdout, string Stderr) Finish(ProcessStartInfo info)
    {
        using Process process = Process.Start(info)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(20_000), "confine did not end");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Pids of processes whose executable is <paramref name="path"/>.</summary>
    private static List<int> ProcessesRunning(string path)
    {
        var pids = new List<int>();
        foreach (string entry in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(entry), out int pid))
            {
                continue;
            }

            try
            {
                if (new FileInfo(Path.Combine(entry, "exe")).LinkTarget == path)
                {
                    pids.Add(pid);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Ended while we looked, or a kernel thread.
            }
        }

        return pids;
    }

    private static (int Code, string Stdout, string Stderr) RunWith(HelperWrapper wrapper, params string[] arguments)
    {
        var info = new ProcessStartInfo(Executable)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment["CONFINE_HELPER"] = wrapper.Script;
        return Finish(info);
    }

    /// <summary>
    /// A script named by CONFINE_HELPER that notes its pid and what its plan descriptor is, then
    /// becomes the published helper (exec keeps the pid).
    /// </summary>
    private sealed class HelperWrapper : IDisposable
    {
        private readonly string _directory = Directory.CreateTempSubdirectory("confine-helper-wrapper-").FullName;

        public HelperWrapper()
        {
            File.WriteAllText(Script, $"""
                #!/bin/sh
                echo $$ > {_directory}/pid
                /usr/bin/readlink /proc/self/fd/3 > {_directory}/plan
                exec {Helper}

                """);
            File.SetUnixFileMode(Script, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        }

        public string Helper { get; } = Path.Combine(Path.GetDirectoryName(Executable)!, "confine-helper");

        public string Script => Path.Combine(_directory, "helper");

        public int HelperPid => int.Parse(File.ReadAllText(Path.Combine(_directory, "pid")));

        public string PlanDescriptor => File.ReadAllText(Path.Combine(_directory, "plan")).TrimEnd('\n');

        public void Dispose() => Directory.Delete(_directory, recursive: true);
    }

    /// <summary>A process's thread names, as the kernel keeps them (15 bytes at most); none once it has ended.</summary>
    private static List<string> ThreadNames(int pid)
    {
        var names = new List<string>();
        try
        {
            foreach (string task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                try
                {
                    names.Add(File.ReadAllText(Path.Combine(task, "comm")).TrimEnd('\n'));
                }
                catch (IOException)
                {
                    // The thread ended while we looked.
                }
            }
        }
        catch (IOException)
        {
            // The process ended while we looked.
        }

        return names;
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
