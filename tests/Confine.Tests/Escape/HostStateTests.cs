using System.Diagnostics;
using Confine.Tests.Support;

namespace Confine.Tests.Escape;

/// <summary>The escape suite's host check sees each kind of change it looks for: a check that cannot fail proves nothing.</summary>
[Trait("Category", "Escape")]
[Collection(EscapeCollection.Name)]
public sealed class HostStateTests
{
    [Fact]
    public void Changes_FileRewrittenWithTheSameBytes_IsReported()
    {
        string file = Path.Combine(Path.GetTempPath(), $"confine-hoststate-{Guid.NewGuid():N}");
        File.WriteAllText(file, "same");
        try
        {
            HostState before = HostState.Read([file], [], []);
            File.SetLastWriteTimeUtc(file, DateTime.UtcNow.AddMinutes(1));
            File.WriteAllText(file, "same");

            Assert.Contains(HostState.Changes(before, HostState.Read([file], [], [])), c => c.StartsWith(file, StringComparison.Ordinal));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void Changes_MarkedProcessLeftRunning_IsReported()
    {
        string marker = SandboxTesting.NewMarker();
        HostState before = HostState.Read([], [marker], []);
        using Process left = Process.Start("sleep", marker);
        try
        {
            List<string> changes = HostState.Changes(before, HostState.Read([], [marker], []));

            string process = $"process {left.Id} (sleep {marker})";
            Assert.Contains(changes, c => c.StartsWith($"{process} of the sandbox", StringComparison.Ordinal));
            Assert.Contains(changes, c => c.StartsWith($"{process} joined the test's own cgroup", StringComparison.Ordinal));
        }
        finally
        {
            left.Kill();
            left.WaitForExit();
        }
    }

    [Fact]
    public void Changes_SurvivorKilled_IsReported()
    {
        using Process survivor = Process.Start("sleep", "60");
        HostState before = HostState.Read([], [], [survivor]);
        survivor.Kill();
        survivor.WaitForExit();

        Assert.Contains($"host process {survivor.Id} was killed", HostState.Changes(before, HostState.Read([], [], [survivor])));
    }

    [Fact]
    public void Changes_SandboxCgroupLeftBehind_IsReported()
    {
        // A cgroup beneath this process's own cgroup (its memory one where there is one), named as
        // Confine names a sandbox's.
        (string Controllers, string Directory)[] own = [.. HostState.OwnCgroups()];
        string parent = own.FirstOrDefault(c => c.Controllers == "memory").Directory ?? own[0].Directory;
        string cgroup = Path.Combine(parent, $"confine-{Environment.ProcessId}-hoststate-test");
        HostState before = HostState.Read([], [], []);
        Directory.CreateDirectory(cgroup);
        try
        {
            Assert.Contains($"cgroup {cgroup} was left behind", HostState.Changes(before, HostState.Read([], [], [])));
        }
        finally
        {
            Directory.Delete(cgroup);
        }
    }
}
