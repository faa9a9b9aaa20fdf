using Confine.Tests.Support;

namespace Confine.Tests.Cli;

/// <summary>The <c>confine</c> command: exit codes, the verdict on stdout or in a file, and bad input.</summary>
[Trait("Category", "Cli")]
// Run again on the published command by scripts/test.sh (see ConfineCli).
[Trait("Command", "confine")]
public sealed class CliTests
{
    [Fact]
    public void Run_StreamsOutputAndExitsWithTheCommandsCode()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--", "/bin/sh", "-c", "echo hello; echo oops >&2; exit 7"]);
        Assert.Equal(7, result.ExitCode);
        Assert.Equal("hello\n", result.Stdout);
        Assert.Equal("oops\n", result.Stderr);
    }

    [Theory]
    [InlineData(">&-", "err\n")]
    [InlineData("2>&-", "")]
    public async Task Run_WithOneOfItsOwnStreamsClosed_StillEndsWithTheCommand(string redirection, string expectedStderr)
    {
        // Writing the command's output to a stream Confine was started without fails (EBADF), which
        // must not stop the run: its output is counted and dropped.
        var info = new System.Diagnostics.ProcessStartInfo("/bin/sh")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in (string[])
            ["-c", $"exec \"$@\" {redirection}", "sh", .. Support.ConfineCli.CommandPrefix, "run", "--", "/bin/sh", "-c", "echo out; echo err >&2"])
        {
            info.ArgumentList.Add(argument);
        }

        using var process = System.Diagnostics.Process.Start(info)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {await stderr}");
        Assert.Equal(redirection == ">&-" ? "" : "out\n", await stdout);
        Assert.Equal(expectedStderr, await stderr);
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    [InlineData("-?")]
    public void Help_IsPrintedForTheRootAndForRun(string option)
    {
        CliResult root = Support.ConfineCli.Run([option]);
        Assert.Equal(0, root.ExitCode);
        Assert.Contains("run", root.Stdout);
        Assert.Contains("check", root.Stdout);

        CliResult run = Support.ConfineCli.Run(["run", option]);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("--timeout", run.Stdout);
        Assert.Contains("--json", run.Stdout);
    }

    [Theory]
    [InlineData("-hx")]
    [InlineData("--help=x")]
    [InlineData("-h:x")]
    [InlineData("/h:1")]
    [InlineData("-?x")]
    public void Help_TokensThatOnlyStartLikeHelp_AreReadAsHelpAsTheParserDoes(string token)
    {
        // System.CommandLine takes these for its help option (bundled, or with a value) wherever
        // they stand before '--'; the command line parses the same whatever root it was given.
        CliResult result = Support.ConfineCli.Run(["run", "/bin/echo", token]);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("--timeout", result.Stdout);
    }

    [Fact]
    public void Version_IsPrinted()
    {
        CliResult result = Support.ConfineCli.Run(["--version"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Matches(@"^\d+\.\d+", result.Stdout);
    }

    [Fact]
    public void Run_HelpAndVersionAfterTheSeparator_BelongToTheCommand()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--", "/bin/echo", "-h", "--help", "--version", "[x]", "@y"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("-h --help --version [x] @y\n", result.Stdout);
    }

    [Fact]
    public void Run_CommandArgumentsArrive_InOrderAndUnchanged()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--", "/bin/sh", "-c", "printf '<%s>' \"$@\"", "sh", "a b", "", "-x", "--"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("<a b><><-x><-->", result.Stdout);
    }

    [Fact]
    public void Run_Json_PrintsTheVerdictWithTheOutputInside()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--json", "--", "/bin/echo", "inside"]);
        Assert.Equal(0, result.ExitCode);
        Verdict verdict = VerdictJson.Deserialize(result.Stdout);
        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.Equal("inside\n", verdict.Stdout.Text);
    }

    [Fact]
    public void Run_VerdictFile_IsWrittenAlongsideStreamedOutput()
    {
        string file = Path.Combine(Path.GetTempPath(), $"verdict-{Guid.NewGuid():N}.json");
        try
        {
            CliResult result = Support.ConfineCli.Run(["run", "--verdict", file, "--", "/bin/sh", "-c", "kill -TERM $$"]);
            Assert.Equal(128 + 15, result.ExitCode);
            Verdict verdict = VerdictJson.Deserialize(File.ReadAllText(file));
            Assert.Equal(VerdictStatus.Signaled, verdict.Status);
            Assert.Equal("SIGTERM", verdict.SignalName);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void Run_Timeout_Exits124()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--timeout", "300ms", "--", "sleep", "10"]);
        Assert.Equal(124, result.ExitCode);
        Assert.Contains("timeout", result.Stderr);
    }

    [Fact]
    public void Run_StdinDash_ForwardsConfinesInput()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--stdin", "-", "--", "tr", "a-z", "A-Z"], stdin: "shout\n");
        Assert.Equal("SHOUT\n", result.Stdout);
    }

    [Fact]
    public void Run_OptionsRefinePolicy()
    {
        CliResult result = Support.ConfineCli.Run(
            ["run", "--hostname", "box", "-e", "GREETING=hi", "-w", "/tmp/work", "-u", "123:456", "--tmpfs", "/scratch:size=1m",
             "--", "/bin/sh", "-c", "hostname; echo $GREETING; pwd; id -u; id -g; head -c 2M /dev/zero > /scratch/f 2>/dev/null || echo capped"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal(["box", "hi", "/tmp/work", "123", "456", "capped"], result.Stdout.Trim().Split('\n'));
    }

    [Fact]
    public void Run_MissingCommand_IsBadInput()
    {
        CliResult result = Support.ConfineCli.Run(["run"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("command", result.Stderr);
    }

    [Fact]
    public void Run_UnknownOption_IsBadInput()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--no-such-flag", "--", "true"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--no-such-flag", result.Stderr);
    }

    [Fact]
    public void Run_BindOfMissingPath_IsBadInputNamingIt()
    {
        CliResult result = Support.ConfineCli.Run(["run", "-v", "/no/such/path:/data", "--", "true"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("binds[0].source", result.Stderr);
        Assert.Contains("/no/such/path", result.Stderr);
        Assert.Single(result.Stderr.Trim().Split('\n'));
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("70000")]
    [InlineData("1:2:3")]
    [InlineData("-1")]
    public void Run_BadUser_IsBadInput(string user)
    {
        CliResult result = Support.ConfineCli.Run(["run", "--user", user, "--", "true"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("user", result.Stderr);
    }

    [Fact]
    public void Run_BindOntoProc_IsBadInput()
    {
        CliResult result = Support.ConfineCli.Run(["run", "-v", "/etc:/proc/x", "--", "true"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("/proc", result.Stderr);
    }

    [Fact]
    public void Run_MissingBinaryInside_Exits127WithOneLine()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--", "no-such-binary-xyz"]);
        Assert.Equal(127, result.ExitCode);
        Assert.Single(result.Stderr.Trim().Split('\n'));
        Assert.Contains("not found", result.Stderr);
        Assert.Contains("no-such-binary-xyz", result.Stderr);
    }

    [Fact]
    public void Run_NotExecutable_Exits126()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--", "/etc/hostname"]);
        Assert.Equal(126, result.ExitCode);
    }

    [Fact]
    public void Run_BadTimeout_IsBadInput()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--timeout", "soon", "--", "true"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("timeout", result.Stderr);
    }

    [Cgroups.CgroupFact]
    public void Run_Stats_PrintsUsageLinesWhileTheCommandRuns()
    {
        CliResult result = Support.ConfineCli.Run(
            ["run", "--json", "--stats", "--stats-interval", "100ms", "--", "python3", "-c",
             "import time\nx = bytearray(20 << 20)\nt = time.time()\nwhile time.time() - t < 0.6: pass"]);
        Assert.Equal(0, result.ExitCode);
        string[] samples = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.InRange(samples.Length, 3, 20);

        // The largest reading, not the last: a sample taken as the command exits sees its memory freed.
        double cpu = 0;
        long memory = 0;
        foreach (string sample in samples)
        {
            using var json = System.Text.Json.JsonDocument.Parse(sample);
            cpu = Math.Max(cpu, json.RootElement.GetProperty("cpu_s").GetDouble());
            memory = Math.Max(memory, json.RootElement.GetProperty("memory_bytes").GetInt64());
        }

        Assert.True(cpu > 0.1, $"cpu_s peaked at {cpu}");
        Assert.True(memory >= 20 << 20, $"memory_bytes peaked at {memory}");
    }

    [Cgroups.CgroupFact]
    public void Run_StatsWithoutJson_PrintsReadableLines()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--stats", "--stats-interval", "100ms", "--", "sleep", "0.35"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Matches(@"confine: usage at \d+\.\d s: cpu \d+\.\d\d s, memory \w+ \(peak \w+\), \d+ pids", result.Stderr);
    }

    [Fact]
    public void Run_ZeroStatsInterval_IsBadInput()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--stats", "--stats-interval", "0s", "--", "true"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("stats-interval", result.Stderr);
    }

    [Fact]
    public void Run_UlimitAboveConfinesOwnHardLimit_IsBadInputBeforeAnythingStarts()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--ulimit", "nofile=64:999999999", "--", "true"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("rlimits", result.Stderr);
        Assert.Contains("can only lower it", result.Stderr);
    }

    [Theory]
    [InlineData("--timeout", "1200h")]
    [InlineData("--timeout", "999999999999s")]
    [InlineData("--cpu-time", "99999999999h")]
    [InlineData("--stats-interval", "2000h")]
    public void Run_DurationLongerThanConfineCanTime_IsBadInput(string option, string value)
    {
        CliResult result = Support.ConfineCli.Run(["run", "--stats", option, value, "--", "true"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("longest", result.Stderr);
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Fact]
    public void Run_ConfigThatNeverEnds_IsRefusedAfterAMegabyte()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--config", "/dev/zero", "--", "true"], timeout: TimeSpan.FromSeconds(20));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("more than 1048576 bytes", result.Stderr);
    }

    [Fact]
    public void Run_VerdictFileThatCannotBeWritten_IsBadInputBeforeTheCommandRuns()
    {
        string marker = Path.Combine(Path.GetTempPath(), $"ran-{Guid.NewGuid():N}");
        CliResult result = Support.ConfineCli.Run(
            ["run", "-v", $"{Path.GetTempPath()}:/host-tmp:rw", "--verdict", "/no/such/dir/v.json", "--", "touch", $"/host-tmp/{Path.GetFileName(marker)}"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("verdict", result.Stderr);
        Assert.False(File.Exists(marker), "the command ran although its verdict could not be written");
    }

    [Fact]
    public void Run_VerdictOrStdinThroughASymbolicLink_IsRefused()
    {
        string dir = Directory.CreateTempSubdirectory("confine-links-").FullName;
        try
        {
            string secret = Path.Combine(dir, "secret");
            File.WriteAllText(secret, "host secret\n");
            File.CreateSymbolicLink(Path.Combine(dir, "verdict.json"), secret);
            File.CreateSymbolicLink(Path.Combine(dir, "input.txt"), secret);

            CliResult verdict = Support.ConfineCli.Run(["run", "--verdict", Path.Combine(dir, "verdict.json"), "--", "true"]);
            CliResult stdin = Support.ConfineCli.Run(["run", "--stdin", Path.Combine(dir, "input.txt"), "--", "cat"]);

            Assert.Equal(2, verdict.ExitCode);
            Assert.Contains("symbolic link", verdict.Stderr);
            Assert.Equal("host secret\n", File.ReadAllText(secret));
            Assert.Equal(2, stdin.ExitCode);
            Assert.Contains("symbolic link", stdin.Stderr);
            Assert.Equal("", stdin.Stdout);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Run_StdinDirectory_SaysItIsADirectory()
    {
        CliResult result = Support.ConfineCli.Run(["run", "--stdin", "/tmp", "--", "cat"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("is a directory", result.Stderr);
    }

    [Fact]
    public void Run_FileBindOverAnExistingFileOfAReadOnlySystemDirectory_Works()
    {
        string file = Path.Combine(Path.GetTempPath(), $"resolv-{Guid.NewGuid():N}.conf");
        File.WriteAllText(file, "nameserver 127.0.0.53\n");
        File.SetUnixFileMode(file, (UnixFileMode)0x1a4);
        try
        {
            CliResult result = Support.ConfineCli.Run(["run", "-v", $"{file}:/etc/resolv.conf", "--", "cat", "/etc/resolv.conf"]);
            Assert.True(result.ExitCode == 0, result.Stderr);
            Assert.Equal("nameserver 127.0.0.53\n", result.Stdout);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
