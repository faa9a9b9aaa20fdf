using System.Globalization;
using System.Text;
using Confine.Cgroups;
using Confine.Native;

namespace Confine.Tests.Cgroups;

/// <summary>
/// What this machine offers the cgroup tests, worked out once: whether they can run at all, and
/// on which cgroup version. The skip reasons feed the fact attributes below.
/// </summary>
internal static class CgroupTestEnvironment
{
    private static readonly Lazy<CgroupHost?> s_host = new(() =>
    {
        try
        {
            return CgroupHost.Detect();
        }
        catch (IOException)
        {
            return null;
        }
    });

    /// <summary>The real host's layout, or null when /proc could not be read.</summary>
    public static CgroupHost? RealHost => s_host.Value;

    /// <summary>Why cgroup tests cannot run here, or null when they can.</summary>
    public static string? SkipReason
    {
        get
        {
            if (!IsRoot())
            {
                return "cgroup tests need root (they create cgroups beneath this process's own)";
            }

            if (RealHost is not CgroupHost host || host.Layout == CgroupLayout.None)
            {
                return "no cgroup filesystem is mounted";
            }

            CgroupHierarchy? memory = host.HierarchyOf(CgroupController.Memory);
            return memory is not null && PrivateParentPath(memory) is not null
                ? null
                : $"this host gives no memory cgroup: {host[CgroupController.Memory]}";
        }
    }

    /// <summary>Why the cgroup v1 tests cannot run here, or null.</summary>
    public static string? V1SkipReason =>
        SkipReason ?? (RealHost!.HierarchyOf(CgroupController.Memory)?.Version == CgroupVersion.V1
            ? null
            : "the memory controller is not on cgroup v1 here");

    /// <summary>Why the cgroup v2 tests cannot run here, or null: they need v2 to carry memory.</summary>
    public static string? V2SkipReason
    {
        get
        {
            CgroupHierarchy? unified = RealHost?.Unified;
            if (unified is null)
            {
                return "no cgroup v2 hierarchy is mounted";
            }

            if (!unified.Has("memory"))
            {
                return $"the cgroup v2 hierarchy at {unified.MountPoint} has no memory controller "
                    + $"(cgroup.controllers: '{string.Join(' ', unified.Controllers)}')";
            }

            return SkipReason;
        }
    }

    /// <summary>
    /// The cgroup beneath which the tests make their private cgroup in <paramref name="hierarchy"/>:
    /// this process's own, except on cgroup v2 when the own cgroup holds processes (the test runner
    /// and its parents) and so cannot hand controllers down; there it is the root of the hierarchy,
    /// which v2 exempts from that rule. That happens in the QEMU harness, where the payload runs
    /// in a child of the root as a delegated systemd unit would. Null when neither works.
    /// </summary>
    public static string? PrivateParentPath(CgroupHierarchy hierarchy)
    {
        CgroupHost host = RealHost!;
        CgroupController probe = hierarchy.Version == CgroupVersion.V2
            ? CgroupController.Memory
            : CgroupControllerNames.All.First(c => host.HierarchyOf(c) == hierarchy);
        // On v2 Confine would step into a leaf when it is alone in its cgroup; the tests build their
        // cgroups without that, so they need an own cgroup that holds no process at all.
        bool ownHoldsProcesses = hierarchy.Version == CgroupVersion.V2
            && CgroupFiles.HasPids(Path.Join(hierarchy.OwnDirectory!, "cgroup.procs"));
        if (host.Place(probe, null).CanCreateChild && !ownHoldsProcesses)
        {
            return hierarchy.OwnPath;
        }

        bool rootWorks = hierarchy.Version == CgroupVersion.V2 && hierarchy.MountRoot == "/"
            && host.Place(probe, "/").CanCreateChild;
        return rootWorks
            ? "/"
            : null;
    }

    /// <summary>
    /// A directory on a real block device for the I/O test, with the device's numbers; null when the
    /// test binaries sit on a virtual filesystem (9p, overlay, tmpfs) and no other directory is named.
    /// The cgroup v2 guest names its scratch disk in <c>CONFINE_TEST_BLOCK_DIRECTORY</c>.
    /// </summary>
    public static (string Directory, BlockDevice Device)? BlockDeviceDirectory
    {
        get
        {
            string directory = Environment.GetEnvironmentVariable("CONFINE_TEST_BLOCK_DIRECTORY") is { Length: > 0 } named
                ? named
                : AppContext.BaseDirectory;
            Interop.Error error = CgroupSyscalls.StatDevice(directory, out _, out uint major, out uint minor);
            if (error != Interop.Error.None || major == 0)
            {
                return null;
            }

            var device = new BlockDevice(major, minor);
            return Directory.Exists($"/sys/dev/block/{device}") ? (directory, device) : null;
        }
    }

    /// <summary>Why no block device can be throttled by the tests, or null.</summary>
    public static string? BlockDeviceSkipReason =>
        BlockDeviceDirectory is null
            ? $"{AppContext.BaseDirectory} is not on a block device (9p, overlay or tmpfs) and CONFINE_TEST_BLOCK_DIRECTORY names none"
            : null;

    private static bool IsRoot()
    {
        string? status = CgroupFiles.TryReadText("/proc/self/status");
        string? uidLine = status?.Split('\n').FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal));
        return uidLine?.Split('\t', StringSplitOptions.RemoveEmptyEntries).ElementAtOrDefault(2) == "0";
    }
}

/// <summary>What a cgroup test needs beyond real cgroups.</summary>
public enum CgroupNeed
{
    /// <summary>The memory controller on cgroup v1.</summary>
    V1,

    /// <summary>The memory controller on cgroup v2 (this machine has none there; the QEMU harness has).</summary>
    V2,

    /// <summary>A block device under the test binaries, to throttle (the QEMU harness has none).</summary>
    BlockDevice,
}

/// <summary>
/// A test on real cgroups: it needs root and a memory controller the tests can use, plus whatever
/// <see cref="CgroupNeed"/>s it names. Otherwise it is skipped with the reason, since a running
/// xunit 2 test cannot skip itself. (Unlike <c>Support.CgroupV2FactAttribute</c>, a v2 test also
/// runs where this process's own cgroup holds processes, since the tests' private cgroup can go
/// beneath the hierarchy's root instead.)
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class CgroupFactAttribute : FactAttribute
{
    /// <summary>Skips the test when the machine cannot give it what it needs.</summary>
    public CgroupFactAttribute(params CgroupNeed[] needs)
    {
        Skip = CgroupTestEnvironment.SkipReason;
        foreach (CgroupNeed need in needs)
        {
            Skip ??= need switch
            {
                CgroupNeed.V1 => CgroupTestEnvironment.V1SkipReason,
                CgroupNeed.V2 => CgroupTestEnvironment.V2SkipReason,
                _ => CgroupTestEnvironment.BlockDeviceSkipReason,
            };
        }
    }
}

/// <summary>
/// A private cgroup beneath this process's own cgroup in every hierarchy the tests use, and a
/// <see cref="CgroupHost"/> that takes it for Confine's own cgroup. Tests create their sandboxes
/// (and their fake stale cgroups) in there, so they never touch cgroups of anyone else on the
/// machine, and whatever a failing test leaves behind is removed at the end.
/// </summary>
public sealed class CgroupTestHost : IDisposable
{
    private readonly List<string> _created = [];

    /// <summary>Creates the private cgroups when the machine can run cgroup tests.</summary>
    public CgroupTestHost()
    {
        if (CgroupTestEnvironment.SkipReason is not null)
        {
            return;
        }

        CgroupHost real = CgroupTestEnvironment.RealHost!;
        string suffix = string.Create(
            CultureInfo.InvariantCulture, $"cgtest-{Environment.ProcessId}-{Random.Shared.Next():x}");
        var parents = new Dictionary<CgroupHierarchy, string>();
        foreach (CgroupHierarchy hierarchy in
            CgroupControllerNames.All.Select(real.HierarchyOf).OfType<CgroupHierarchy>().Distinct())
        {
            if (CgroupTestEnvironment.PrivateParentPath(hierarchy) is string parentPath)
            {
                parents[hierarchy] = parentPath;
            }
        }

        foreach ((CgroupHierarchy hierarchy, string parentPath) in parents)
        {
            string parentDirectory = hierarchy.DirectoryOf(parentPath)!;
            string directory = Path.Join(parentDirectory, suffix);
            if (hierarchy.Version == CgroupVersion.V2)
            {
                EnableV2Controllers(parentDirectory);
            }

            Directory.CreateDirectory(directory);
            _created.Add(directory);
            if (hierarchy.Version == CgroupVersion.V1 && hierarchy.Has("cpuset"))
            {
                // A v1 cpuset child starts empty and then refuses both tasks and children's cpus.
                foreach (string file in new[] { "cpuset.cpus", "cpuset.mems" })
                {
                    string value = File.ReadAllText(Path.Join(parentDirectory, file)).Trim();
                    Assert.Equal(Interop.Error.None, CgroupFiles.Write(Path.Join(directory, file), value));
                }
            }
        }

        // The same host, except that each used hierarchy's "own cgroup" is the private one.
        var procSelfCgroup = new StringBuilder();
        foreach (string line in File.ReadAllLines("/proc/self/cgroup"))
        {
            string[] parts = line.Split(':', 3);
            bool v2 = parts[0] == "0" && parts[1].Length == 0;
            string? parentPath = parents.FirstOrDefault(p => v2
                ? p.Key.Version == CgroupVersion.V2
                : p.Key.Version == CgroupVersion.V1 && parts[1].Split(',').Any(p.Key.Has)).Value;
            string path = parentPath is null ? parts[2] : parentPath.TrimEnd('/') + "/" + suffix;
            procSelfCgroup.Append(parts[0]).Append(':').Append(parts[1]).Append(':').Append(path).Append('\n');
        }

        Host = new CgroupHost(File.ReadAllText("/proc/self/mountinfo"), procSelfCgroup.ToString(), "/");
    }

    /// <summary>The host as the tests' sandboxes see it: their "own cgroup" is the private one.</summary>
    internal CgroupHost Host { get; } = null!;

    /// <summary>The private cgroup's directory in <paramref name="controller"/>'s hierarchy.</summary>
    internal string PrivateDirectory(CgroupController controller) => Host[controller].ParentDirectory!;

    /// <summary>A fresh sandbox name for one test.</summary>
    public static string UniqueName(string test) =>
        string.Create(CultureInfo.InvariantCulture, $"{test}-{Random.Shared.Next():x}");

    /// <summary>Adds the tests' controllers to the private cgroup's parent's subtree_control (v2).</summary>
    private static void EnableV2Controllers(string parentDirectory)
    {
        string available = CgroupFiles.TryReadText(Path.Join(parentDirectory, "cgroup.controllers")) ?? "";
        foreach (string controller in new[] { "memory", "pids", "cpu", "cpuset", "io" })
        {
            if (available.Split(' ', StringSplitOptions.TrimEntries).Contains(controller))
            {
                CgroupFiles.Write(Path.Join(parentDirectory, "cgroup.subtree_control"), "+" + controller);
            }
        }
    }

    /// <summary>Kills anything a failed test left in the private cgroups and removes them.</summary>
    public void Dispose()
    {
        foreach (string directory in _created)
        {
            foreach (string leftover in Directory.GetDirectories(directory).Reverse())
            {
                for (int attempt = 0; attempt < 100 && Directory.Exists(leftover); attempt++)
                {
                    foreach (int pid in CgroupFiles.ReadPids(Path.Join(leftover, "cgroup.procs")))
                    {
                        CgroupSyscalls.Kill(pid);
                    }

                    CgroupSyscalls.Rmdir(leftover);
                    Thread.Sleep(10);
                }
            }

            CgroupSyscalls.Rmdir(directory);
        }
    }
}

/// <summary>
/// The cgroup tests run one at a time and alone, with no other test collection beside them: they
/// measure CPU shares and I/O rates.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class CgroupCollection : ICollectionFixture<CgroupTestHost>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Cgroup";
}
