using System.Diagnostics;
using Confine.Native;
using Confine.Planning;
using Confine.Running;
using Microsoft.Win32.SafeHandles;

namespace Confine.Tests.Running;

/// <summary>
/// How a sandbox's reports reach its run, including when the shared I/O loop reads them late, as
/// it does on a busy host.
/// </summary>
[Collection(IoLoopStallCollection.Name)]
[Trait("Category", "Run")]
public sealed class PreparedSandboxTests
{
    [Fact]
    public async Task Reports_HelperEndsWithTheCommandPlanUnreadBeforeTheyAreRead_AllArrive()
    {
        // /usr is a read-only bind, so the init fails at the mount step, before it reads the plan.
        SandboxPolicy policy = SandboxPolicy.Default with
        {
            Binds = [new BindMount("/etc/hostname", "/usr/no-such-file-here")],
        };
        HostIdentity identity = HostIdentity.Current;
        byte[] setupPlan = SandboxPlanner.BuildSetup(policy, identity, new PlanExtras());
        byte[] commandPlan = SandboxPlanner.BuildCommand(policy, ["true"], identity, new PlanExtras());

        // The loop reads nothing until the helper has ended with the command plan still queued to it.
        // Cold, the code that sends the plan can take longer than the helper takes to fail, and a
        // plan that comes too late is never queued; the second round runs warm.
        for (int round = 0; round < 2; round++)
        {
            PreparedSandbox sandbox;
            var sink = new RecordingSink();
            using (StallIoLoop())
            {
                sandbox = PreparedSandbox.Start(setupPlan);
                sandbox.SendCommandPlan(commandPlan, []);
                WaitUntilZombie(sandbox.HelperPid);
                sandbox.Attach(sink);
            }

            await sink.Closed.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, WaitStatus.ExitCode(await sandbox.Exited.WaitAsync(TimeSpan.FromSeconds(30))));
            sandbox.Discard();

            HelperReport error = Assert.Single(sink.Reports, r => r.Type == HelperProtocol.REPORT_ERROR);
            Assert.Equal("mount", HelperProtocol.StepName(error.Step));
            Assert.Single(sink.Reports, r => r.Type == HelperProtocol.REPORT_INIT_GONE);
        }
    }

    /// <summary>Holds the shared I/O loop's thread in a callback until the result is disposed.</summary>
    private static IDisposable StallIoLoop()
    {
        var entered = new ManualResetEventSlim();
        var release = new ManualResetEventSlim();
        (SafeFileHandle read, SafeFileHandle write) = Posix.Pipe();
        IoLoop.Shared.Register(read, _ =>
        {
            entered.Set();
            release.Wait();
            return false;
        });
        Posix.WriteAll(write, [1], "write to the stall pipe");
        Assert.True(entered.Wait(TimeSpan.FromSeconds(10)), "the I/O loop did not pick up the stall");
        return new Release(release, write);
    }

    private static void WaitUntilZombie(int pid)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            // The state follows the command name, which is in parentheses: "pid (comm) S ...".
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            if (stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z'))
            {
                return;
            }

            Thread.Sleep(5);
        }

        Assert.Fail($"the helper {pid} did not end");
    }

    private sealed class Release(ManualResetEventSlim release, SafeFileHandle write) : IDisposable
    {
        public void Dispose()
        {
            release.Set();
            write.Dispose();
        }
    }

    private sealed class RecordingSink : IReportSink
    {
        private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public List<HelperReport> Reports { get; } = [];

        public Task Closed => _closed.Task;

        public void OnReport(HelperReport report) => Reports.Add(report);

        public void OnDescriptor(HelperReport report, SafeFileHandle descriptor) => descriptor.Dispose();

        public void OnReportsClosed() => _closed.TrySetResult();
    }
}

/// <summary>
/// Tests that hold the shared I/O loop still for a moment run alone, so that no other test's
/// sandbox waits on it.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class IoLoopStallCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "IoLoopStall";
}
