using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Confine.Cgroups;
using Confine.Native;

namespace Confine.Tests.Cgroups;

/// <summary>
/// Sandbox cgroups on this machine's real kernel, whichever cgroup version it has: the workloads
/// are real processes and the limits are the kernel's.
/// </summary>
[Collection(CgroupCollection.Name)]
[Trait("Category", "Cgroup")]
public sealed class SandboxCgroupTests
{
    private const long MiB = 1L << 20;

    private readonly CgroupTestHost _env;

    public SandboxCgroupTests(CgroupTestHost env) => _env = env;

    [CgroupFact]
    public void Create_WithMemoryLimit_OomKillsHogAndCountsIt()
    {
        using SandboxCgroup cgroup = Create(new ResourceLimits { MemoryBytes = 64 * MiB });
        using Workload hog = Workload.Start("head -c 200000000 /dev/zero | tail");

        hog.JoinAndRelease(cgroup);

        // Generous for the QEMU harness, where software emulation takes ~30 s to fill 64 MiB.
        Assert.True(hog.WaitForExit(120_000), "the memory hog was not stopped");
        CgroupUsage usage = cgroup.ReadUsage();
        Assert.Equal(128 + 9, hog.ExitCode);
        Assert.True(usage.OomKills >= 1, $"oom_kill is {usage.OomKills}");
        Assert.InRange(usage.MemoryPeakBytes!.Value, 48 * MiB, 65 * MiB);
        Assert.Equal(usage.OomKills, cgroup.ReadResourceUsage().OomKills);
    }

    [CgroupFact]
    public void Create_WithPidsLimit_ForkBombStaysUnderLimit()
    {
        using SandboxCgroup cgroup = Create(new ResourceLimits { PidsLimit = 20 });
        // A bomb with a depth bound, so that it would end by itself (2^8 shells) even unconfined.
        using Workload bomb = Workload.Start(
            "f() { if [ $1 -gt 0 ]; then f $(($1 - 1)) & f $(($1 - 1)) & fi; sleep 1; wait; }; f 7");

        bomb.JoinAndRelease(cgroup);
        Thread.Sleep(1000);
        CgroupUsage usage = cgroup.ReadUsage();
        cgroup.KillAll();

        Assert.InRange(usage.PidsPeak!.Value, 3, 20);
        Assert.True(usage.PidsLimitHits > 0, $"pids.events max is {usage.PidsLimitHits}: the limit was never reached");
        Assert.True(cgroup.IsEmpty());
        using Process after = Process.Start("/bin/true")!;
        Assert.True(after.WaitForExit(5000));
        Assert.Equal(0, after.ExitCode);
    }

    [CgroupFact]
    public void Create_WithHalfACpu_SpinnerGetsHalfACore()
    {
        using SandboxCgroup cgroup = Create(new ResourceLimits { Cpus = 0.5 });
        using Workload spinner = Workload.Start("while :; do :; done");

        spinner.JoinAndRelease(cgroup);
        Thread.Sleep(200);
        long before = cgroup.ReadCpuUsageNanoseconds();
        var clock = Stopwatch.StartNew();
        Thread.Sleep(2000);
        long after = cgroup.ReadCpuUsageNanoseconds();
        double share = (after - before) / (clock.Elapsed.TotalMilliseconds * 1e6);
        CgroupUsage usage = cgroup.ReadUsage();
        cgroup.KillAll();

        Assert.InRange(share, 0.35, 0.6);
        Assert.True(usage.CpuThrottledNanoseconds > 0, "the spinner was never throttled");
        Assert.InRange(usage.CpuUserNanoseconds!.Value + usage.CpuSystemNanoseconds!.Value,
            usage.CpuUsageNanoseconds!.Value * 0.95, usage.CpuUsageNanoseconds.Value * 1.05);
        Assert.True(usage.CpuUserNanoseconds > usage.CpuUsageNanoseconds * 0.7, "a shell busy loop is user time");
    }

    [CgroupFact]
    public void Create_WithoutLimits_StillAccountsCpuTime()
    {
        using SandboxCgroup cgroup = Create(ResourceLimits.None);
        using Workload spinner = Workload.Start("i=0; while [ $i -lt 200000 ]; do i=$((i + 1)); done");

        spinner.JoinAndRelease(cgroup);
        Assert.True(spinner.WaitForExit(20_000));

        Assert.Null(cgroup.DirectoryOf(CgroupController.Cpu));
        Assert.True(cgroup.ReadCpuUsageNanoseconds() > 10_000_000, "less than 10 ms of CPU was counted");
        Assert.True(cgroup.ReadUsage().MemoryPeakBytes > 0);
    }

    [CgroupFact]
    public void KeepUsageFilesOpen_LaterReadings_SeeTheCurrentValuesAndRemovalStillWorks()
    {
        SandboxCgroup cgroup = Create(new ResourceLimits { MemoryBytes = 64 * MiB, PidsLimit = 50 });
        IReadOnlyList<string> directories = cgroup.Directories;
        cgroup.KeepUsageFilesOpen();
        CgroupUsage before = cgroup.ReadUsage();

        // The kept descriptors must be read afresh, not return what they said when opened.
        using Workload spinner = Workload.Start("i=0; while [ $i -lt 200000 ]; do i=$((i + 1)); done; head -c 8000000 /dev/zero | tail -c 1 >/dev/null");
        spinner.JoinAndRelease(cgroup);
        Assert.True(spinner.WaitForExit(20_000));
        CgroupUsage after = cgroup.ReadUsage();

        Assert.True(after.CpuUsageNanoseconds > before.CpuUsageNanoseconds + 10_000_000,
            $"cpu usage went from {before.CpuUsageNanoseconds} to {after.CpuUsageNanoseconds} ns");
        Assert.True(after.MemoryPeakBytes > before.MemoryPeakBytes, $"memory peak stayed at {after.MemoryPeakBytes}");
        Assert.Equal(CpuUsageReadByPath(cgroup), after.CpuUsageNanoseconds);

        // Open descriptors do not keep a cgroup from being removed, and a reading after is harmless.
        cgroup.Dispose();
        Assert.All(directories, d => Assert.False(Directory.Exists(d), $"{d} is left behind"));
        Assert.Empty(cgroup.Leftovers);

        // The task has ended, so the count no longer moves: a fresh open must agree with the kept descriptor.
        static long? CpuUsageReadByPath(SandboxCgroup cgroup)
        {
            string accounting = cgroup.DirectoryOf(CgroupController.CpuAccounting)!;
            return File.Exists(Path.Join(accounting, "cpuacct.usage"))
                ? CgroupFiles.TryReadInt64(Path.Join(accounting, "cpuacct.usage"))
                : CgroupFiles.TryReadKeyed(Path.Join(accounting, "cpu.stat"), "usage_usec") * 1000;
        }
    }

    [CgroupFact(CgroupNeed.BlockDevice)]
    public void Create_WithWriteBps_ThrottlesDirectWrites()
    {
        (string directory, BlockDevice device) = CgroupTestEnvironment.BlockDeviceDirectory!.Value;
        const long Rate = 2 * MiB;
        const long Bytes = 4 * MiB;
        string file = Path.Join(directory, $"cgroup-io-{Guid.NewGuid():N}.tmp");
        try
        {
            using SandboxCgroup cgroup = Create(new ResourceLimits
            {
                DeviceIo = [new DeviceIoLimit(device.ToString()) { WriteBps = Rate }],
            });
            using Workload writer = Workload.Start(
                $"exec dd if=/dev/zero of={file} bs=256k count={Bytes / (256 * 1024)} oflag=direct");

            var clock = Stopwatch.StartNew();
            writer.JoinAndRelease(cgroup);
            Assert.True(writer.WaitForExit(20_000));
            double seconds = clock.Elapsed.TotalSeconds;
            CgroupUsage usage = cgroup.ReadUsage();

            Assert.Equal(0, writer.ExitCode);
            // The clock includes dd's start, which emulation or a loaded host stretch: that can only
            // lower the rate, so the upper bound is the throttle's proof and the lower one a stall check.
            Assert.InRange(Bytes / seconds, Rate * 0.25, Rate * 1.5);
            Assert.True(usage.IoWriteBytes >= Bytes, $"io write bytes {usage.IoWriteBytes}");
        }
        finally
        {
            File.Delete(file);
        }
    }

    [CgroupFact]
    public void KillAll_SigtermIgnoringAndDoubleForkedTasks_KillsEveryTask()
    {
        using SandboxCgroup cgroup = Create(ResourceLimits.None);
        using Workload stubborn = Workload.Start("trap '' TERM; (sleep 60 &); sleep 60");

        stubborn.JoinAndRelease(cgroup);
        int orphan = WaitForOrphan(cgroup, stubborn.Pid);
        Interop.kill(stubborn.Pid, 15);
        Thread.Sleep(100);
        Assert.False(stubborn.HasExited, "the shell did not ignore SIGTERM, so the test proves nothing");

        cgroup.KillAll();

        Assert.True(cgroup.IsEmpty());
        Assert.True(stubborn.WaitForExit(2000));
        Assert.Equal(128 + 9, stubborn.ExitCode);
        Assert.False(IsRunning(orphan), $"the double-forked task {orphan} survived");
    }

    [CgroupFact]
    public void Dispose_WithTaskInside_KillsItAndRemovesEveryDirectory()
    {
        SandboxCgroup cgroup = Create(new ResourceLimits { MemoryBytes = 64 * MiB, PidsLimit = 50, Cpus = 1 });
        IReadOnlyList<string> directories = cgroup.Directories;
        using Workload sleeper = Workload.Start("sleep 60");
        sleeper.JoinAndRelease(cgroup);
        Assert.All(directories, d => Assert.True(Directory.Exists(d), d));

        cgroup.Dispose();
        cgroup.Dispose();

        Assert.All(directories, d => Assert.False(Directory.Exists(d), $"{d} is left behind"));
        Assert.Empty(cgroup.Leftovers);
        Assert.True(sleeper.WaitForExit(2000));
    }

    [CgroupFact]
    public void Dispose_DirectoriesAlreadyRemoved_DoesNotThrow()
    {
        SandboxCgroup cgroup = Create(ResourceLimits.None);
        foreach (string directory in cgroup.Directories)
        {
            Assert.Equal(Interop.Error.None, CgroupSyscalls.Rmdir(directory));
        }

        cgroup.Dispose();

        Assert.Empty(cgroup.Leftovers);
    }

    [CgroupFact]
    public void Create_Always_JoinsFreezerAndCpuAccounting()
    {
        using SandboxCgroup cgroup = Create(ResourceLimits.None);

        Assert.NotNull(cgroup.DirectoryOf(CgroupController.Freezer));
        Assert.NotNull(cgroup.DirectoryOf(CgroupController.CpuAccounting));
        Assert.NotNull(cgroup.DirectoryOf(CgroupController.Memory));
        Assert.Equal(cgroup.Directories.Count, cgroup.ProcsFiles.Count);
        Assert.All(cgroup.ProcsFiles, f => Assert.True(File.Exists(f), f));
        Assert.All(cgroup.Directories, d => Assert.StartsWith(CgroupName.Prefix, Path.GetFileName(d)));
    }

    [CgroupFact]
    public void RemoveStale_DeadOwner_KillsTasksAndRemovesCgroup()
    {
        int deadPid = DeadPid();
        string stale = $"{CgroupName.Prefix}{deadPid}-1-stale";
        string reused = string.Create(CultureInfo.InvariantCulture,
            $"{CgroupName.Prefix}{Environment.ProcessId}-{CgroupName.SelfStartTime + 1}-reused");
        CgroupController[] controllers = [CgroupController.Freezer, CgroupController.Pids, CgroupController.Memory];
        var directories = new List<string>();
        foreach (string name in new[] { stale, reused })
        {
            foreach (CgroupController controller in controllers.Where(c => _env.Host[c].CanCreateChild))
            {
                string directory = Path.Join(_env.PrivateDirectory(controller), name);
                Directory.CreateDirectory(directory);
                directories.Add(directory);
            }
        }

        using SandboxCgroup live = Create(ResourceLimits.None);
        using Workload orphaned = Workload.Start("sleep 60");
        foreach (string directory in directories.Where(d => d.EndsWith("-stale", StringComparison.Ordinal)))
        {
            Assert.Equal(Interop.Error.None, CgroupFiles.Write(Path.Join(directory, "cgroup.procs"),
                orphaned.Pid.ToString(CultureInfo.InvariantCulture)));
        }

        int removed = SandboxCgroup.RemoveStale(_env.Host);

        Assert.Equal(2, removed);
        Assert.All(directories, d => Assert.False(Directory.Exists(d), $"{d} is left behind"));
        Assert.True(orphaned.WaitForExit(2000), "the stale cgroup's task survived");
        Assert.All(live.Directories, d => Assert.True(Directory.Exists(d), $"the live sandbox's {d} was removed"));
    }

    [CgroupFact]
    public void Create_UnderRealOwnCgroup_CreatesAndRemovesDirectories()
    {
        // No limits: on cgroup v2 this process's cgroup holds processes and can hand no controllers
        // down, but the sandbox still gets a cgroup there for accounting and killing.
        CgroupHost host = CgroupHost.Detect();
        SandboxCgroup cgroup = SandboxCgroup.Create(host, ResourceLimits.None, CgroupTestHost.UniqueName("real"));
        IReadOnlyList<string> directories = cgroup.Directories;

        Assert.NotEmpty(directories);
        Assert.All(directories, d => Assert.Equal(
            host.Hierarchies.Single(h => d.StartsWith(h.MountPoint + "/", StringComparison.Ordinal)).OwnDirectory,
            Path.GetDirectoryName(d)));
        cgroup.Dispose();

        Assert.All(directories, d => Assert.False(Directory.Exists(d)));
    }

    [CgroupFact]
    public void ReadUsage_Repeatedly_IsCheapEnoughForSampling()
    {
        const int Rounds = 300;
        using SandboxCgroup cgroup = Create(new ResourceLimits { MemoryBytes = 64 * MiB, PidsLimit = 100, Cpus = 1 });
        string oneFile = cgroup.ProcsFiles[0];
        double Time(Action read)
        {
            for (int i = 0; i < Rounds; i++)
            {
                read();
            }

            var clock = Stopwatch.StartNew();
            for (int i = 0; i < Rounds; i++)
            {
                read();
            }

            return clock.Elapsed.TotalMilliseconds / Rounds;
        }

        double reading = Time(() => cgroup.ReadUsage());
        double file = Time(() => CgroupFiles.TryReadText(oneFile));

        // It reads about fifteen small interface files, so it should cost about that many file
        // reads (which holds under emulation too, where everything is slower), and stay far
        // below a 100 ms sampling period.
        Assert.True(reading < 30 * file, $"one reading took {reading} ms, one file {file} ms");
        Assert.True(reading < 25, $"one reading took {reading} ms");
    }

    private SandboxCgroup Create(ResourceLimits limits, [CallerMemberName] string test = "") =>
        SandboxCgroup.Create(_env.Host, limits, CgroupTestHost.UniqueName(test.Split('_')[0]));

    /// <summary>
    /// Waits until the shell's subshell has forked the background sleep and exited, leaving three
    /// tasks: the shell, its own sleep, and the orphaned sleep, whose pid is returned.
    /// </summary>
    private static int WaitForOrphan(SandboxCgroup cgroup, int shell)
    {
        var clock = Stopwatch.StartNew();
        while (clock.ElapsedMilliseconds < 20_000)
        {
            IReadOnlyList<int> pids = cgroup.ReadPids();
            int[] orphans = [.. pids.Where(p => p != shell && ParentOf(p) is int parent && parent != shell)];
            if (pids.Count == 3 && orphans.Length == 1)
            {
                return orphans[0];
            }

            Thread.Sleep(10);
        }

        Assert.Fail($"the double fork did not leave an orphan; tasks: {string.Join(' ', cgroup.ReadPids())}");
        return 0;
    }

    /// <summary>The parent pid of <paramref name="pid"/>, or null when it has exited.</summary>
    private static int? ParentOf(int pid)
    {
        string? stat = CgroupFiles.TryReadText($"/proc/{pid}/stat");
        return stat is null
            ? null
            : int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1], CultureInfo.InvariantCulture);
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2] is not ('Z' or 'X');
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>The pid of a process that has exited and been reaped.</summary>
    private static int DeadPid()
    {
        using Process exited = Process.Start("/bin/true")!;
        exited.WaitForExit();
        Assert.False(Directory.Exists($"/proc/{exited.Id}"));
        return exited.Id;
    }
}
