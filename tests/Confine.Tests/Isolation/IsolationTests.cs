using Confine.Tests.Support;
using static Confine.Tests.Support.SandboxTesting;

namespace Confine.Tests.Isolation;

/// <summary>
/// Checks every isolation property from inside a real sandbox, run through the library as root.
/// <see cref="RootlessIsolationTests"/> holds the unprivileged path to the same facts.
/// </summary>
[Trait("Category", "Isolation")]
public sealed class IsolationTests
{
    internal static async Task<Dictionary<string, string>> ProbeAsync(SandboxPolicy? policy = null)
    {
        Verdict verdict = await RunShellAsync(IsolationProbe.Script, policy);
        Assert.True(verdict.Status == VerdictStatus.Ok, VerdictJson.Serialize(verdict));
        return Facts(verdict.Stdout.Text);
    }

    internal static Dictionary<string, string> Facts(string? output)
    {
        Dictionary<string, string> facts = ParseFacts(output);
        // ls prints the shell's descriptors while the shell waits for it, holding nothing extra.
        facts["fds"] = string.Join(' ', Section(output, "fds"));
        return facts;
    }

    /// <summary>The assertions shared with the rootless tests.</summary>
    internal static void AssertIsolated(Dictionary<string, string> facts, string hostMarker)
    {
        // PID namespace: the init is PID 1 and only the sandbox's own processes exist.
        Assert.Equal("confine-helper", facts["init"]);
        string[] pids = facts["pids"].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("1", pids);
        // Pids are numbered afresh: a host pid would be far above the few the sandbox has made.
        Assert.All(pids, p => Assert.InRange(int.Parse(p), 1, 64));
        Assert.DoesNotContain(hostMarker, facts["cmdlines"]);

        // Mount namespace: read-only root and system directories, private size-capped /tmp.
        Assert.Contains("Read-only file system", facts["root_write"]);
        Assert.Contains("Read-only file system", facts["usr_write"]);
        Assert.Equal("ok", facts["tmp_write"]);
        Assert.Contains("No space left on device", facts["tmp_cap"]);
        Assert.Equal("bin dev etc lib lib64 proc sbin tmp usr", facts["root_entries"].Trim());
        Assert.False(facts.ContainsKey("visible"), $"host path visible: {facts.GetValueOrDefault("visible")}");
        Assert.Contains("Read-only file system", facts["proc_sys_write"]);
        foreach (string masked in (string[])["kcore", "keys", "kallsyms", "timer_list"])
        {
            Assert.True(facts[masked] is "0" or "absent", $"/proc/{masked} is readable: {facts[masked]}");
        }
        Assert.Equal("fd full null random stderr stdin stdout urandom zero", facts["dev"].Trim());

        // Network namespace with only loopback.
        Assert.Equal("lo", facts["ifaces"].Trim());

        // No privileges of any kind.
        foreach (string set in (string[])["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"])
        {
            Assert.Equal("0000000000000000", facts[set]);
        }

        Assert.Equal("1", facts["NoNewPrivs"]);

        // UTS namespace, descriptors, environment, session.
        Assert.Equal("sandbox", facts["hostname"]);
        Assert.Equal("0 1 2", facts["fds"]);
        Assert.Equal(
            "HOME=/tmp LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin TERM=dumb",
            facts["env"].Trim());
        Assert.Equal("yes", facts["sid_is_self"]);
        Assert.Equal("0", facts["tty_nr"]);
        Assert.Equal("0", facts["core_limit"]);
    }

    [Fact]
    public async Task Run_DefaultPolicy_IsIsolatedInEveryNamespace()
    {
        string marker = NewMarker();
        using var hostProcess = System.Diagnostics.Process.Start("sleep", marker);
        try
        {
            Environment.SetEnvironmentVariable("CONFINE_TEST_SECRET", "leak");
            Dictionary<string, string> facts = await ProbeAsync();
            AssertIsolated(facts, marker);
            Assert.Equal("0", facts["uid"]);
        }
        finally
        {
            hostProcess.Kill();
            hostProcess.WaitForExit();
        }
    }

    [Fact]
    public async Task Run_WithUser_RunsCommandAsThatUserWithoutCapabilities()
    {
        Dictionary<string, string> facts = await ProbeAsync(SandboxPolicy.Default with { User = new SandboxUser(1000, 1001) });
        Assert.Equal("1000", facts["uid"]);
        Assert.Equal("1001", facts["gid"]);
        Assert.Equal("0000000000000000", facts["CapEff"]);
        Assert.Equal("0000000000000000", facts["CapBnd"]);
    }

    [Fact]
    public async Task Run_Command_StartsWithNoSignalBlockedOrIgnored()
    {
        // The test host is a .NET process, which ignores SIGPIPE: a disposition that would survive
        // into the command if Confine did not start the helper with every signal at its default.
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default, ["/bin/grep", "^Sig[BI]", "/proc/self/status"]);
        Assert.True(verdict.Status == VerdictStatus.Ok, VerdictJson.Serialize(verdict));
        Dictionary<string, string> masks = ParseFacts(verdict.Stdout.Text?.Replace(":\t", "="));
        Assert.Equal("0000000000000000", masks["SigBlk"]);
        Assert.Equal("0000000000000000", masks["SigIgn"]);
    }

    [Fact]
    public async Task Run_WithHostname_SetsItInsideOnly()
    {
        string before = File.ReadAllText("/proc/sys/kernel/hostname");
        Verdict verdict = await Sandbox.RunAsync(SandboxPolicy.Default with { Hostname = "judge-7" }, ["hostname"]);
        Assert.Equal("judge-7\n", verdict.Stdout.Text);
        Assert.Equal(before, File.ReadAllText("/proc/sys/kernel/hostname"));
    }

    [Fact]
    public async Task Run_WithHostNetwork_SeesHostInterfaces()
    {
        int hostInterfaces = File.ReadAllLines("/proc/net/dev").Length - 2;
        Verdict verdict = await RunShellAsync("tail -n +3 /proc/net/dev | wc -l", SandboxPolicy.Default with { Network = NetworkMode.Host });
        Assert.Equal(hostInterfaces.ToString(), verdict.Stdout.Text?.Trim());
    }

    [Fact]
    public async Task Run_ReadOnlyBind_IsVisibleButNotWritable()
    {
        string dir = Directory.CreateTempSubdirectory("confine-bind-").FullName;
        try
        {
            // The sandbox's root is an unprivileged host id: it reads what "other" may read.
            File.SetUnixFileMode(dir, (UnixFileMode)0x1ed);
            File.WriteAllText(Path.Combine(dir, "input.txt"), "from host");
            var policy = SandboxPolicy.Default with { Binds = [new BindMount(dir, "/data")] };
            Verdict verdict = await RunShellAsync("cat /data/input.txt; echo; echo x > /data/new 2>&1 || echo denied", policy);
            Assert.Contains("from host", verdict.Stdout.Text);
            Assert.Contains("denied", verdict.Stdout.Text);
            Assert.False(File.Exists(Path.Combine(dir, "new")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Run_WritableBind_WritesReachTheHost()
    {
        string dir = Directory.CreateTempSubdirectory("confine-bind-").FullName;
        try
        {
            // The sandbox's root is an unprivileged host id, so the directory must let it write.
            File.SetUnixFileMode(dir, (UnixFileMode)0x1ff);
            var policy = SandboxPolicy.Default with { Binds = [new BindMount(dir, "/out", Writable: true)], WorkingDirectory = "/out" };
            Verdict verdict = await RunShellAsync("echo result > answer.txt", policy);
            Assert.Equal(VerdictStatus.Ok, verdict.Status);
            Assert.Equal("result\n", File.ReadAllText(Path.Combine(dir, "answer.txt")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Run_ReadOnlyBindOfTreeWithSubmount_MakesTheSubmountReadOnlyToo()
    {
        // A tmpfs mounted inside the bound tree, in a private mount namespace of a helper shell, so
        // the host's own mount table is never touched.
        string dir = Directory.CreateTempSubdirectory("confine-sub-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(dir, "inner"));
            File.SetUnixFileMode(dir, (UnixFileMode)0x1ed);
            string probeDir = Path.Combine(AppContext.BaseDirectory);
            var info = new System.Diagnostics.ProcessStartInfo("unshare")
            {
                ArgumentList =
                {
                    "--mount", "--propagation", "private", "sh", "-c",
                    $"mount -t tmpfs tmpfs {dir}/inner && dotnet {probeDir}Confine.Cli.dll run -v {dir}:/data -- sh -c 'touch /data/inner/x 2>&1; grep \" /data/inner \" /proc/self/mountinfo'",
                },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using var process = System.Diagnostics.Process.Start(info)!;
            string output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync();
            Assert.Contains("Read-only file system", output);
            Assert.Contains(" ro,", output);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Run_WithLandlock_RefusesWhatTheMountsAlone_Allow()
    {
        // The sandbox's root owns its /dev tmpfs, so only Landlock stops it adding files there.
        const string Script = "touch /dev/extra 2>&1 || true; echo data > /tmp/f && cat /tmp/f; python3 -c 'print(42)'";
        Verdict without = await RunShellAsync(Script);
        Verdict with = await RunShellAsync(Script, SandboxPolicy.Default with { Landlock = true });

        Assert.Equal("data\n42\n", without.Stdout.Text);
        Assert.Equal(VerdictStatus.Ok, with.Status);
        Assert.Contains("Permission denied", with.Stdout.Text);
        Assert.EndsWith("data\n42\n", with.Stdout.Text);
    }

    [Fact]
    public async Task Run_ParentOfRoot_IsTheRootItselfFromTheFirstInstruction()
    {
        // The old root is detached off the critical path; ".." at the root would cross into it
        // if the command ever ran before the detach was complete.
        for (int i = 0; i < 30; i++)
        {
            Verdict verdict = await RunShellAsync("stat -c %d:%i / /.. /tmp/.. | sort -u | wc -l; ls /../oldroot /../newroot 2>&1 | grep -c 'No such'");
            Assert.Equal("1\n2\n", verdict.Stdout.Text);
        }
    }

    [Fact]
    public async Task Run_Command_MayUseEveryCpuConfineMay()
    {
        // The helper starts the init on its own CPU and lets it go once released; a command left
        // on that one CPU would run a parallel build on a single core.
        string own = File.ReadLines("/proc/self/status").Single(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal));
        for (int i = 0; i < 5; i++)
        {
            Verdict verdict = await RunShellAsync("grep Cpus_allowed_list: /proc/self/status");
            Assert.Equal(own + "\n", verdict.Stdout.Text);
        }
    }

    [Fact]
    public async Task Run_Always_LeavesHostMountTableUnchanged()
    {
        string[] before = HostMounts();
        await RunShellAsync("mount 2>/dev/null; true");
        Assert.Equal(before, HostMounts());
    }

    [Fact]
    public async Task Run_KillAllInside_ReachesOnlyTheSandbox()
    {
        string marker = NewMarker();
        using var hostProcess = System.Diagnostics.Process.Start("sleep", marker);
        try
        {
            Verdict verdict = await RunShellAsync("kill -9 -1; sleep 0.2; echo survived");
            Assert.False(hostProcess.HasExited, "a host process was killed from inside the sandbox");
            Assert.NotEqual(VerdictStatus.SetupFailed, verdict.Status);
        }
        finally
        {
            hostProcess.Kill();
            hostProcess.WaitForExit();
        }
    }

    [Fact]
    public async Task Run_MountTargetThroughALinkAnEarlierSandboxPlanted_StaysInsideTheSandbox()
    {
        string shared = Directory.CreateTempSubdirectory("confine-planted-").FullName;
        string victim = Directory.CreateTempSubdirectory("confine-victim-").FullName;
        try
        {
            File.SetUnixFileMode(shared, (UnixFileMode)0x1ff);
            var work = new BindMount(shared, "/work", Writable: true);

            // The first run leaves links that point at a host directory through the staged old root.
            Verdict plant = await RunShellAsync(
                $"ln -s /oldroot{victim} /work/cache && ln -s /oldroot{victim} /work/data",
                SandboxPolicy.Default with { Binds = [work] });
            Assert.Equal(VerdictStatus.Ok, plant.Status);

            // Later runs mount beneath those links. Resolved inside the new root, the links lead
            // nowhere, and the mount fails rather than land on the host.
            SandboxPolicy[] later =
            [
                SandboxPolicy.Default with { Binds = [work, new BindMount("/etc", "/work/data/etc")] },
                SandboxPolicy.Default with { Binds = [work], Tmpfs = [.. SandboxPolicy.Default.Tmpfs, new TmpfsMount("/work/cache/pip", 1 << 20)] },
            ];
            foreach (SandboxPolicy policy in later)
            {
                Verdict verdict = await RunShellAsync("true", policy);

                Assert.Empty(Directory.EnumerateFileSystemEntries(victim));
                Assert.Equal(VerdictStatus.SetupFailed, verdict.Status);
                Assert.Equal("mount", verdict.Error!.Step);
            }
        }
        finally
        {
            Directory.Delete(shared, recursive: true);
            Directory.Delete(victim, recursive: true);
        }
    }
}
