using System.Diagnostics;
using Confine.Tests.Support;

namespace Confine.Tests.VmHarness;

/// <summary>
/// Proves that the cgroup v2 guest (scripts/cgroup-v2-vm/run.sh) gives the test process what the
/// cgroup v2 backend needs: controllers on the unified hierarchy, and a cgroup of its own in which
/// it may create children. Skipped on a host whose controllers are on cgroup v1.
/// </summary>
[Trait("Requirement", "CgroupV2")]
public sealed class CgroupV2HarnessTests
{
    [CgroupV2Fact]
    public void CgroupControllers_OnV2Hierarchy_IncludeMemory()
    {
        string root = CgroupV2Hierarchy.MountPoint!;
        string own = CgroupV2Hierarchy.OwnCgroup!;

        string[] rootControllers = ReadWords(Path.Combine(root, "cgroup.controllers"));
        string[] ownControllers = ReadWords(Path.Combine(own, "cgroup.controllers"));

        Assert.Contains("memory", rootControllers);
        Assert.Contains("memory", ownControllers);
        Assert.NotEqual(root, own);
    }

    [CgroupV2Fact]
    public void CreateChildCgroup_BeneathOwnCgroup_AcceptsProcess()
    {
        string own = CgroupV2Hierarchy.OwnCgroup!;
        string child = Path.Combine(own, $"harness-{Environment.ProcessId}-{Guid.NewGuid():N}");

        Directory.CreateDirectory(child);
        try
        {
            // A shell joins the child and reports the cgroup the kernel now puts it in.
            var start = new ProcessStartInfo("/bin/sh")
            {
                ArgumentList = { "-c", "echo $$ >\"$1/cgroup.procs\" && cat /proc/self/cgroup", "sh", child },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using Process shell = Process.Start(start)!;
            string output = shell.StandardOutput.ReadToEnd();
            string error = shell.StandardError.ReadToEnd();
            shell.WaitForExit();

            Assert.True(shell.ExitCode == 0, $"the shell could not join {child}: {error}");
            string expected = "0::" + child[CgroupV2Hierarchy.MountPoint!.TrimEnd('/').Length..];
            Assert.Contains(expected, output.Split('\n'));
            Assert.Contains("populated 0", File.ReadAllLines(Path.Combine(child, "cgroup.events")));
        }
        finally
        {
            Directory.Delete(child);
        }

        Assert.False(Directory.Exists(child));
    }

    private static string[] ReadWords(string path) =>
        File.ReadAllText(path).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
