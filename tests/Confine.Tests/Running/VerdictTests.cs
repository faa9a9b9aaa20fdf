using System.Diagnostics;
using Confine.Running;
using Confine.Tests.Support;
using static Confine.Tests.Support.SandboxTesting;

namespace Confine.Tests.Running;

/// <summary>How runs end, and what the verdict says about them.</summary>
[Trait("Category", "Run")]
public sealed class VerdictTests
{
    [Fact]
    public async Task Run_SuccessfulCommand_IsOkWithOutputAndTimes()
    {
        Verdict verdict = await RunShellAsync("echo out; echo err >&2");
        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.Equal(0, verdict.ExitCode);
        Assert.Equal("out\n", verdict.Stdout.Text);
        Assert.Equal("err\n", verdict.Stderr.Text);
        Assert.False(verdict.Stdout.Truncated);
        Assert.InRange(verdict.SetupTimeSeconds, 1e-5, 5);
        Assert.InRange(verdict.WallTimeSeconds, 1e-5, 5);
    }

    [Fact]
    public void Run_Blocking_SuccessfulCommandIsOkWithItsOutput()
    {
        // In this process the shared I/O loop has usually got its own thread from an earlier test's
        // run, and Sandbox.Run then only blocks on the run: this checks the verdict it gives. That
        // its caller serves the loop and starts no thread is checked in fresh processes, by the CLI
        // tests (the command calls Sandbox.Run) and by the published command's thread test.
        Verdict verdict = Sandbox.Run(SandboxPolicy.Default, ["/bin/sh", "-c", "echo hi"]);

        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.Equal(0, verdict.ExitCode);
        Assert.Equal("hi\n", verdict.Stdout.Text);
        Assert.Equal("", verdict.Stderr.Text);
        Assert.InRange(verdict.WallTimeSeconds, 1e-5, 5);
        Assert.False(IoLoop.IsServingThread);
    }

    [Fact]
    public void Run_Blocking_NonzeroExitReportsTheCodeAndBothStreams()
    {
        Verdict verdict = Sandbox.Run(SandboxPolicy.Default, ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]);

        Assert.Equal(VerdictStatus.ExitNonzero, verdict.Status);
        Assert.Equal(3, verdict.ExitCode);
        Assert.Equal("out\n", verdict.Stdout.Text);
        Assert.Equal("err\n", verdict.Stderr.Text);
    }

    [Fact]
    public void Run_BlockingWithNoCommand_ThrowsPolicyException()
    {
        PolicyException error = Assert.Throws<PolicyException>(() => Sandbox.Run(SandboxPolicy.Default, []));
        Assert.Equal("command", error.Path);
        Assert.False(IoLoop.IsServingThread);
    }

    [Fact]
    public async Task Run_NonzeroExit_ReportsTheCode()
    {
        Verdict verdict = await RunShellAsync("exit 3");
        Assert.Equal(VerdictStatus.ExitNonzero, verdict.Status);
        Assert.Equal(3, verdict.ExitCode);
        Assert.Null(verdict.Signal);
    }

    [Fact]
    public async Task Run_KilledBySignal_ReportsTheSignal()
    {
        Verdict verdict = await RunShellAsync("kill -SEGV $$");
        Assert.Equal(VerdictStatus.Signaled, verdict.Status);
        Assert.Equal(11, verdict.Signal);
        Assert.Equal("SIGSEGV", verdict.SignalName);
        Assert.Null(verdict.ExitCode);
    }

    [Fact]
    public async Task Run_CpuBoundCommand_ReportsCpuTimeAndMemory()
    {
        Verdict verdict = await Sandbox.RunAsync(
            SandboxPolicy.Default,
            ["python3", "-c", "x = bytearray(50 * 1024 * 1024)\nimport time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"]);
        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.InRange(verdict.CpuTimeSeconds, 0.25, 3);
        Assert.InRange(verdict.MemoryPeakBytes, 50L << 20, 500L << 20);
    }

    [Fact]
    public async Task Run_WithTimeout_KillsDoubleForkedDaemonThatIgnoresTerm()
    {
        string marker = NewMarker();
        var policy = SandboxPolicy.Default with { Timeout = TimeSpan.FromMilliseconds(500) };
        var clock = Stopwatch.StartNew();
        Verdict verdict = await RunShellAsync(
            $"trap '' TERM; (setsid sh -c \"trap '' TERM; sleep {marker}\" &) ; sleep {marker}", policy);
        Assert.Equal(VerdictStatus.Timeout, verdict.Status);
        Assert.Equal("timeout", verdict.Limit?.Name);
        Assert.Equal(9, verdict.Signal);
        Assert.InRange(verdict.WallTimeSeconds, 0.45, 3);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5));
        Assert.Empty(HostProcessesWith(marker));
    }

    [Fact]
    public async Task Run_CommandExits_DaemonsItLeftAreKilled()
    {
        string marker = NewMarker();
        Verdict verdict = await RunShellAsync($"(setsid sleep {marker} &); echo started");
        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.Empty(HostProcessesWith(marker));
    }

    [Fact]
    public async Task Run_OutputOverLimit_StopsWithOutputLimit()
    {
        var policy = SandboxPolicy.Default with { StdoutLimitBytes = 1000 };
        Verdict verdict = await Sandbox.RunAsync(policy, ["yes"]);
        Assert.Equal(VerdictStatus.OutputLimit, verdict.Status);
        Assert.Equal("stdout", verdict.Limit?.Name);
        Assert.Equal(1000, verdict.Stdout.Bytes);
        Assert.Equal(1000, verdict.Stdout.Text!.Length);
        Assert.True(verdict.Stdout.Truncated);
    }

    [Fact]
    public async Task Run_StderrOverLimit_NamesStderr()
    {
        var policy = SandboxPolicy.Default with { StderrLimitBytes = 10 };
        Verdict verdict = await RunShellAsync("echo 0123456789abcdef >&2; sleep 5", policy);
        Assert.Equal(VerdictStatus.OutputLimit, verdict.Status);
        Assert.Equal("stderr", verdict.Limit?.Name);
        Assert.Equal("0123456789", verdict.Stderr.Text);
    }

    [Fact]
    public async Task Run_StdinFromBytes_ReachesTheCommand()
    {
        var io = new SandboxIO { Stdin = StdinSource.FromBytes("hello\nworld\n"u8.ToArray()) };
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["wc", "-l"], io);
        Assert.Equal("2", verdict.Stdout.Text?.Trim());
    }

    [Fact]
    public async Task Run_StdinFromFile_ReachesTheCommandThroughAPipe()
    {
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "abc");
            var io = new SandboxIO { Stdin = StdinSource.FromFile(file) };
            Verdict verdict = await RunShellAsync("cat; echo; readlink /proc/self/fd/0", SandboxPolicy.Default, io);
            string[] lines = verdict.Stdout.Text!.Trim().Split('\n');
            Assert.Equal("abc", lines[0]);
            Assert.StartsWith("pipe:", lines[1]);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Run_NoStdin_ReadsEndOfFile()
    {
        Verdict verdict = await RunShellAsync("cat; echo done");
        Assert.Equal("done\n", verdict.Stdout.Text);
    }

    [Fact]
    public async Task Run_StreamingOutput_GoesToTheCallersStream()
    {
        using var stdout = new MemoryStream();
        Verdict verdict = await RunShellAsync("echo streamed", SandboxPolicy.Default, new SandboxIO { Stdout = stdout });
        Assert.Equal("streamed\n", System.Text.Encoding.UTF8.GetString(stdout.ToArray()));
        Assert.Null(verdict.Stdout.Text);
        Assert.Equal(9, verdict.Stdout.Bytes);
    }

    [Fact]
    public async Task Run_Cancelled_KillsTheSandbox()
    {
        string marker = NewMarker();
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["sleep", marker], null, cancellation.Token);
        Assert.Equal(VerdictStatus.Cancelled, verdict.Status);
        Assert.Empty(HostProcessesWith(marker));
    }

    [Fact]
    public async Task Run_MissingBinary_FailsWithExecStepAndName()
    {
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["no-such-program-here"]);
        Assert.Equal(VerdictStatus.SetupFailed, verdict.Status);
        Assert.Equal("exec", verdict.Error?.Step);
        Assert.Equal("ENOENT", verdict.Error?.ErrnoName);
        Assert.Contains("no-such-program-here", verdict.Error?.Message);
    }

    [Fact]
    public async Task Run_MissingWorkingDirectoryInBind_FailsAtWorkdirStep()
    {
        var policy = SandboxPolicy.Default with { WorkingDirectory = "/usr/no-such-dir" };
        Verdict verdict = await Sandbox.RunAsync(policy, ["true"]);
        Assert.Equal(VerdictStatus.SetupFailed, verdict.Status);
        Assert.Equal("workdir", verdict.Error?.Step);
        Assert.Contains("/usr/no-such-dir", verdict.Error?.Message);
    }

    [Fact]
    public async Task Run_LoopbackInside_Works()
    {
        const string Script = """
            import socket
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
            c = socket.create_connection(s.getsockname()); a, _ = s.accept()
            c.sendall(b"ping"); print(a.recv(4).decode())
            """;
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["python3", "-c", Script]);
        Assert.Equal("ping\n", verdict.Stdout.Text);
    }

    [Fact]
    public async Task Run_ManyConcurrentRuns_AllSucceed()
    {
        Task<Verdict>[] runs = Enumerable.Range(0, 16)
            .Select(i => Sandbox.RunAsync(SandboxPolicy.Default, ["/bin/echo", i.ToString()]))
            .ToArray();
        Verdict[] verdicts = await Task.WhenAll(runs);
        for (int i = 0; i < verdicts.Length; i++)
        {
            Assert.Equal($"{i}\n", verdicts[i].Stdout.Text);
        }
    }

    [Fact]
    public void Verdict_Json_HasTheDocumentedKeys()
    {
        var verdict = new Verdict { Status = VerdictStatus.ExitNonzero, ExitCode = 3 };
        using var document = System.Text.Json.JsonDocument.Parse(VerdictJson.Serialize(verdict));
        System.Text.Json.JsonElement root = document.RootElement;
        foreach (string key in (string[])["version", "status", "exit_code", "signal", "stdout", "stderr", "wall_time_s", "cpu_time_s", "memory_peak_bytes", "setup_time_s"])
        {
            Assert.True(root.TryGetProperty(key, out _), $"missing key {key}");
        }

        Assert.Equal("exit_nonzero", root.GetProperty("status").GetString());
        Assert.True(root.GetProperty("stdout").TryGetProperty("truncated", out _));
        Assert.Equal(verdict, VerdictJson.Deserialize(VerdictJson.Serialize(verdict)) with { Violations = verdict.Violations, Weakened = verdict.Weakened });
    }
}
