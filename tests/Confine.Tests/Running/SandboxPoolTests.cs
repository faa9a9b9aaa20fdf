using Confine.Running;

namespace Confine.Tests.Running;

/// <summary>
/// Sandboxes built ahead of their run: by a previous run of the same policy, or asked for with
/// <see cref="Sandbox.Prepare"/>. Each test uses a host name of its own, so that no other test's run
/// can take the sandbox it prepared, and the class runs alone, so that no other test's sandboxes
/// push it out of the pool.
/// </summary>
[Collection(IoLoopStallCollection.Name)]
[Trait("Category", "Run")]
public sealed class SandboxPoolTests
{
    private static SandboxPolicy PolicyOfItsOwn() =>
        SandboxPolicy.Default with { Hostname = $"pool-{Guid.NewGuid():N}"[..20] };

    [Fact]
    public async Task Run_AfterARunOfTheSamePolicy_FindsItsSandboxPreparedAhead()
    {
        SandboxPolicy policy = PolicyOfItsOwn();

        Verdict first = await Sandbox.RunAsync(policy, ["true"]);
        // The next sandbox is built once a run has ended, in the background; wait for it here.
        await SandboxPool.SettledAsync();
        Verdict second = await Sandbox.RunAsync(policy, ["cat", "/proc/sys/kernel/hostname"]);

        Assert.Equal(VerdictStatus.Ok, first.Status);
        Assert.False(first.PreparedAhead);
        Assert.Equal(VerdictStatus.Ok, second.Status);
        Assert.True(second.PreparedAhead);
        Assert.Equal(policy.Hostname + "\n", second.Stdout.Text);
    }

    [Fact]
    public async Task Prepare_ThenRun_TakesThePreparedSandbox()
    {
        SandboxPolicy policy = PolicyOfItsOwn();

        Sandbox.Prepare(policy);
        await SandboxPool.SettledAsync();
        // Limits, seccomp and the command are not part of the sandbox that was built ahead.
        Verdict verdict = await Sandbox.RunAsync(
            policy with { Timeout = TimeSpan.FromSeconds(20), SeccompProfile = "strict" },
            ["cat", "/proc/sys/kernel/hostname"]);

        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.True(verdict.PreparedAhead);
        Assert.Equal(policy.Hostname + "\n", verdict.Stdout.Text);
    }

    [Fact]
    public async Task Prepare_ThenRunADifferentSandbox_BuildsItsOwn()
    {
        SandboxPolicy prepared = PolicyOfItsOwn();
        SandboxPolicy other = prepared with { Hostname = prepared.Hostname + "x" };

        Sandbox.Prepare(prepared);
        await SandboxPool.SettledAsync();
        Verdict verdict = await Sandbox.RunAsync(other, ["cat", "/proc/sys/kernel/hostname"]);

        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.False(verdict.PreparedAhead);
        Assert.Equal(other.Hostname + "\n", verdict.Stdout.Text);
    }

    [Fact]
    public async Task Run_AfterItsBindSourceWasRemovedAndMadeAgain_SeesTheNewOne()
    {
        // As a judge empties its job directory between runs; ext4 gives the new one the old inode.
        Verdict verdict = await RunAfterPreparing(job =>
        {
            Directory.Delete(job, recursive: true);
            FillJobDirectory(job, "second\n");
        });

        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.Equal("second\n", verdict.Stdout.Text);
        Assert.False(verdict.PreparedAhead);
    }

    [Fact]
    public async Task Run_AfterFilesChangedInsideItsBindSource_TakesThePreparedSandbox()
    {
        // The directory stays the one the sandbox binds, so the sandbox sees what changed in it.
        Verdict verdict = await RunAfterPreparing(job =>
        {
            File.Delete(Path.Combine(job, "answer"));
            File.WriteAllText(Path.Combine(job, "answer"), "second\n");
        });

        Assert.Equal(VerdictStatus.Ok, verdict.Status);
        Assert.Equal("second\n", verdict.Stdout.Text);
        Assert.True(verdict.PreparedAhead);
    }

    /// <summary>
    /// Prepares a sandbox that binds a job directory holding "first", applies <paramref name="change"/>
    /// to that directory, then runs <c>cat /job/answer</c> under the same policy.
    /// </summary>
    private static async Task<Verdict> RunAfterPreparing(Action<string> change)
    {
        string parent = Directory.CreateTempSubdirectory("confine-pool-").FullName;
        string job = Path.Combine(parent, "job");
        try
        {
            File.SetUnixFileMode(parent, (UnixFileMode)0x1ed);
            FillJobDirectory(job, "first\n");
            SandboxPolicy policy = PolicyOfItsOwn() with { Binds = [new BindMount(job, "/job")] };
            Sandbox.Prepare(policy);
            await SandboxPool.SettledAsync();

            change(job);
            return await Sandbox.RunAsync(policy, ["cat", "/job/answer"]);
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }

    [Fact]
    public async Task Run_WhoseSandboxCannotBeBuilt_LeavesNoneWaitingForTheNextRun()
    {
        // /usr is a read-only bind, so the mount point cannot be made: setup fails at its mount step.
        SandboxPolicy policy = PolicyOfItsOwn() with
        {
            Binds = [new BindMount("/etc/hostname", "/usr/no-such-file-here")],
        };
        await SandboxPool.SettledAsync();
        SandboxPool.Clear();

        Verdict verdict = await Sandbox.RunAsync(policy, ["true"]);
        await SandboxPool.SettledAsync();

        Assert.Equal(VerdictStatus.SetupFailed, verdict.Status);
        Assert.Equal("mount", verdict.Error!.Step);
        Assert.Equal(0, SandboxPool.WaitingCount);
    }

    /// <summary>A directory the sandbox's root can read, holding one file, <c>answer</c>.</summary>
    private static void FillJobDirectory(string job, string answer)
    {
        Directory.CreateDirectory(job);
        File.SetUnixFileMode(job, (UnixFileMode)0x1ed);
        File.WriteAllText(Path.Combine(job, "answer"), answer);
        File.SetUnixFileMode(Path.Combine(job, "answer"), (UnixFileMode)0x1a4);
    }

    [Fact]
    public async Task Prepare_MorePoliciesThanThePoolHolds_KeepsTheNewestAndEndsTheOthers()
    {
        SandboxPolicy[] policies = [.. Enumerable.Range(0, SandboxPool.MaxKinds + 2).Select(_ => PolicyOfItsOwn())];
        int helpersBefore = OwnHelperChildren().Count;

        foreach (SandboxPolicy policy in policies)
        {
            Sandbox.Prepare(policy);
        }

        await SandboxPool.SettledAsync();
        Assert.True(SandboxPool.WaitingCount <= SandboxPool.MaxKinds, $"{SandboxPool.WaitingCount} sandboxes wait");
        // The two pushed out are killed and reaped by the I/O loop, not left behind.
        await WaitUntil(() => OwnHelperChildren().Count <= helpersBefore + SandboxPool.MaxKinds);

        Verdict newest = await Sandbox.RunAsync(policies[^1], ["true"]);
        Verdict oldest = await Sandbox.RunAsync(policies[0], ["true"]);
        Assert.True(newest.PreparedAhead);
        Assert.False(oldest.PreparedAhead);
    }

    /// <summary>The helpers this process started that are still there (alive or not yet reaped).</summary>
    private static List<int> OwnHelperChildren()
    {
        var found = new List<int>();
        foreach (string directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), out int pid))
            {
                continue;
            }

            try
            {
                string stat = File.ReadAllText(Path.Combine(directory, "stat"));
                int close = stat.LastIndexOf(')');
                string name = stat[(stat.IndexOf('(') + 1)..close];
                string[] fields = stat[(close + 2)..].Split(' ');
                if (name == "confine-helper" && int.Parse(fields[1]) == Environment.ProcessId)
                {
                    found.Add(pid);
                }
            }
            catch (IOException)
            {
                // The process ended while it was being read.
            }
        }

        return found;
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), "timed out waiting for the pushed-out helpers to end");
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task Prepare_WhileOneWaits_StartsNoOtherHelper()
    {
        SandboxPolicy policy = PolicyOfItsOwn();
        Sandbox.Prepare(policy);
        await SandboxPool.SettledAsync();
        long started = PreparedSandbox.StartedCount;

        for (int i = 0; i < 5; i++)
        {
            Sandbox.Prepare(policy);
        }

        Assert.Equal(started, PreparedSandbox.StartedCount);
        Verdict verdict = await Sandbox.RunAsync(policy, ["true"]);
        Assert.True(verdict.PreparedAhead);
    }

    [Fact]
    public void Prepare_InvalidPolicy_ThrowsBeforeAnythingStarts()
    {
        SandboxPolicy policy = SandboxPolicy.Default with { Hostname = "not a host name" };

        PolicyException error = Assert.Throws<PolicyException>(() => Sandbox.Prepare(policy));

        Assert.Contains("hostname", error.Message);
    }
}
