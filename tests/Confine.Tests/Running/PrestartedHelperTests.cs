using System.Diagnostics;
using Confine.Native;
using Confine.Running;
using Microsoft.Win32.SafeHandles;

namespace Confine.Tests.Running;

/// <summary>
/// A helper started before its setup plan is known, as the published confine command starts one
/// (native/confine-prestart.c): it clones its init at once, which makes its network namespace at
/// the start byte, ahead of the plan, and it ends that init itself when the plan never comes. Here the helper is spawned the way that
/// code spawns it, with the setup plan on a pipe.
/// </summary>
[Collection(PrestartedHelperCollection.Name)]
[Trait("Category", "Run")]
public sealed class PrestartedHelperTests
{
    [Fact]
    public void Helper_PlanPipeClosedBeforeItsStart_EndsItsInitAndItselfQuietly()
    {
        using var helper = Spawned.Start();
        // Cloned at once, into every namespace but the network's, which waits for the start.
        int init = WaitForOnlyChild(helper.Pid);
        Assert.NotEqual(NamespaceOf("self", "pid"), NamespaceOf(init.ToString(), "pid"));
        Assert.Equal(NamespaceOf("self", "net"), NamespaceOf(init.ToString(), "net"));

        helper.PlanWrite.Dispose();

        Assert.Equal(0, WaitStatus.ExitCode(Posix.WaitPid(helper.Pid)));
        Assert.Empty(helper.Reports());
        Assert.False(Directory.Exists($"/proc/{init}"), $"the init {init} outlived its helper");
    }

    [Fact]
    public void Helper_Started_MakesTheInitsNamespacesAheadOfThePlan_AndReapsItWhenThePlanNeverComes()
    {
        using var helper = Spawned.Start();
        Posix.WriteAll(helper.PlanWrite, [HelperProtocol.PLAN_PIPE_START], "start byte");

        // Every namespace is made before the plan comes: the expensive part of the clone is done.
        int init = WaitForOnlyChild(helper.Pid);
        WaitUntil(() => NamespaceOf(init.ToString(), "net") != NamespaceOf("self", "net"), "the init's own network namespace");
        foreach (string ns in (string[])["net", "pid", "mnt", "user", "ipc", "uts"])
        {
            Assert.NotEqual(NamespaceOf("self", ns), NamespaceOf(init.ToString(), ns));
        }

        // The plan's pipe is the outer process's alone: the init, cloned while it was open, let it go.
        string planPipe = new FileInfo($"/proc/self/fd/{(int)helper.PlanWrite.DangerousGetHandle()}").LinkTarget!;
        Assert.DoesNotContain(planPipe, Directory.GetFiles($"/proc/{init}/fd").Select(fd => new FileInfo(fd).LinkTarget));

        helper.PlanWrite.Dispose();
        Assert.Equal(0, WaitStatus.ExitCode(Posix.WaitPid(helper.Pid)));
        Assert.Empty(helper.Reports());
        Assert.False(Directory.Exists($"/proc/{init}"), $"the init {init} outlived its helper");
    }

    [Fact]
    public void Helper_PlanPipeWithoutTheStartByte_FailsSayingSo()
    {
        using var helper = Spawned.Start();
        Posix.WriteAll(helper.PlanWrite, "CNFP"u8, "a plan without its start byte");
        helper.PlanWrite.Dispose();

        Assert.Equal(125, WaitStatus.ExitCode(Posix.WaitPid(helper.Pid)));
        HelperReport error = Assert.Single(helper.Reports());
        Assert.Equal(HelperProtocol.REPORT_ERROR, error.Type);
        Assert.Equal("read_plan", HelperProtocol.StepName(error.Step));
        Assert.Contains("start byte", error.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_OnAnAdoptedHelper_BuildsTheSandboxOnItsEarlyInit()
    {
        Spawned helper = Spawned.Start();
        PrestartedHelper.Adopt(helper.Adoptable(HelperProcess.Path));
        int init = WaitForOnlyChild(helper.Pid);

        // A host name of its own, so that no sandbox prepared ahead by an earlier test fits the run.
        SandboxPolicy policy = SandboxPolicy.Default with { Hostname = $"early{Random.Shared.Next(100000)}" };
        Task<Verdict> run = Sandbox.RunAsync(policy, ["/bin/sh", "-c", "sleep 0.3; hostname"]);

        // The early init is the one that forks the command.
        int command = WaitForOnlyChild(init);
        Assert.True(command > 0);
        Verdict verdict = await run.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.Equal(policy.Hostname + "\n", verdict.Stdout.Text);
        Assert.Null(PrestartedHelper.Take());
        Assert.False(Directory.Exists($"/proc/{helper.Pid}"), "the helper outlived its run");
    }

    [Fact]
    public async Task Run_OnAnAdoptedHelperWithTheHostsNetwork_ClonesItsInitAgain()
    {
        Spawned helper = Spawned.Start();
        PrestartedHelper.Adopt(helper.Adoptable(HelperProcess.Path));
        int early = WaitForOnlyChild(helper.Pid);

        SandboxPolicy policy = SandboxPolicy.Default with { Network = NetworkMode.Host, Hostname = $"host{Random.Shared.Next(100000)}" };
        Verdict verdict = await Sandbox.RunAsync(policy, ["/bin/cat", "/proc/net/dev"]).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        // The host's devices, not a fresh namespace's lone loopback.
        Assert.Equal(File.ReadAllLines("/proc/net/dev").Length, (verdict.Stdout.Text ?? "").TrimEnd('\n').Split('\n').Length);
        Assert.False(Directory.Exists($"/proc/{early}"), "the init cloned ahead with its own network outlived the run");
        Assert.Null(PrestartedHelper.Take());
    }

    [Fact]
    public async Task Run_WithAnAdoptedHelperOfAnotherPath_EndsItAndSpawnsItsOwn()
    {
        Spawned helper = Spawned.Start();
        PrestartedHelper.Adopt(helper.Adoptable("/elsewhere/confine-helper"));
        int early = WaitForOnlyChild(helper.Pid);

        SandboxPolicy policy = SandboxPolicy.Default with { Hostname = $"other{Random.Shared.Next(100000)}" };
        Verdict verdict = await Sandbox.RunAsync(policy, ["/bin/echo", "own"]).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.Equal("own\n", verdict.Stdout.Text);
        Assert.False(Directory.Exists($"/proc/{helper.Pid}"), "the helper of another path was not ended");
        Assert.False(Directory.Exists($"/proc/{early}"), "its init was not ended");
    }

    [Fact]
    public void DiscardUnused_EndsTheAdoptedHelperAndItsInit()
    {
        Spawned helper = Spawned.Start();
        PrestartedHelper.Adopt(helper.Adoptable(HelperProcess.Path));
        int init = WaitForOnlyChild(helper.Pid);

        PrestartedHelper.DiscardUnused();

        Assert.False(Directory.Exists($"/proc/{helper.Pid}"), "the helper was not reaped");
        Assert.False(Directory.Exists($"/proc/{init}"), "its init outlived it");
        Assert.Null(PrestartedHelper.Take());
    }

    private static string NamespaceOf(string pid, string ns) =>
        new FileInfo($"/proc/{pid}/ns/{ns}").LinkTarget ?? throw new InvalidOperationException($"no {ns} namespace link for {pid}");

    private static void WaitUntil(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"waited 10 s for {what}");
            Thread.Sleep(5);
        }
    }

    /// <summary>The pid of <paramref name="parent"/>'s only child, once it has one.</summary>
    private static int WaitForOnlyChild(int parent)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            string children = File.ReadAllText($"/proc/{parent}/task/{parent}/children").Trim();
            if (children.Length > 0)
            {
                return int.Parse(Assert.Single(children.Split(' ')));
            }

            Thread.Sleep(5);
        }

        throw new TimeoutException($"process {parent} started no child within 10 s");
    }

    /// <summary>A helper spawned on the descriptors native/confine-prestart.c gives it.</summary>
    private sealed class Spawned : IDisposable
    {
        private Spawned(int pid, SafeFileHandle planWrite, SafeFileHandle report, SafeFileHandle[] others)
        {
            Pid = pid;
            PlanWrite = planWrite;
            Report = report;
            Others = others;
        }

        public int Pid { get; }

        public SafeFileHandle PlanWrite { get; }

        public SafeFileHandle Report { get; }

        /// <summary>Confine's ends of the sandbox's stdio and of the lifeline, in that order.</summary>
        private SafeFileHandle[] Others { get; }

        public static Spawned Start()
        {
            var (stdinRead, stdinWrite) = Posix.Pipe();
            var (stdoutRead, stdoutWrite) = Posix.Pipe();
            var (stderrRead, stderrWrite) = Posix.Pipe();
            var (planRead, planWrite) = Posix.Pipe();
            var (reportOurs, reportTheirs) = Posix.SeqPacketPair();
            var (lifelineRead, lifelineWrite) = Posix.Pipe();
            SafeFileHandle[] theirs = [stdinRead, stdoutWrite, stderrWrite, planRead, reportTheirs, lifelineRead];
            int pid = HelperProcess.Spawn(theirs);
            foreach (SafeFileHandle handle in theirs)
            {
                handle.Dispose();
            }

            return new Spawned(pid, planWrite, reportOurs, [stdinWrite, stdoutRead, stderrRead, lifelineWrite]);
        }

        /// <summary>Hands every descriptor over to a <see cref="PrestartedHelper"/> naming <paramref name="path"/>.</summary>
        public PrestartedHelper Adoptable(string path) =>
            new(Pid, path, Others[0], Others[1], Others[2], PlanWrite, Report, Others[3]);

        /// <summary>Every report the helper sent before it closed its socket (it must have ended).</summary>
        public unsafe List<HelperReport> Reports()
        {
            var reports = new List<HelperReport>();
            byte[] buffer = new byte[HelperProtocol.ReportSize];
            fixed (byte* start = buffer)
            {
                while (Interop.read((int)Report.DangerousGetHandle(), start, (nuint)buffer.Length) == buffer.Length)
                {
                    reports.Add(HelperReport.Parse(buffer));
                }
            }

            return reports;
        }

        public void Dispose()
        {
            PlanWrite.Dispose();
            Report.Dispose();
            foreach (SafeFileHandle handle in Others)
            {
                handle.Dispose();
            }

            // Ended already by every test that uses Dispose; a failed one must not leave it behind.
            if (Directory.Exists($"/proc/{Pid}"))
            {
                Interop.kill(Pid, 9);
                Posix.WaitPid(Pid);
            }
        }
    }
}

/// <summary>
/// Tests that adopt a helper for this process's next sandbox run alone: any other test's sandbox
/// started meanwhile would take it.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class PrestartedHelperCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "PrestartedHelper";
}
