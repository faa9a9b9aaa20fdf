using System.Globalization;
using Confine.Native;

namespace Confine.Cgroups;

internal sealed partial class SandboxCgroup
{
    /// <summary>
    /// Below this the sandbox's own init and the command's execve can be OOM-killed before the
    /// command does anything, and the verdict would blame the command for a limit it never reached.
    /// The kernel itself takes any value, even 0.
    /// </summary>
    internal const long MinimumMemoryBytes = 4L << 20;

    /// <summary>The sandbox's init and the command are two tasks before the command forks anything.</summary>
    internal const int MinimumPids = 2;

    /// <summary>The CFS period written with a CPU limit, the kernel's default (100 ms).</summary>
    internal const long CpuPeriodMicroseconds = 100_000;

    /// <summary>The kernel refuses a CFS quota under 1 ms (<c>min_cfs_quota_period</c>).</summary>
    internal const long MinimumCpuQuotaMicroseconds = 1_000;

    /// <summary>
    /// Creates the sandbox's cgroups on <paramref name="host"/> and writes <paramref name="limits"/>.
    /// Besides the controllers the limits need, the sandbox joins those that account for it
    /// (CPU time, memory, tasks, I/O) and the freezer, whenever the host gives them, so that usage
    /// is measured and <see cref="KillAll"/> is reliable even without limits.
    /// </summary>
    /// <param name="host">The host's cgroup layout.</param>
    /// <param name="limits">The limits to enforce.</param>
    /// <param name="name">The sandbox's unique part of the directory name (letters, digits, <c>_ . -</c>).</param>
    /// <exception cref="PolicyException">A limit is impossible (too little memory, too many CPUs, ...).</exception>
    /// <exception cref="CgroupUnavailableException">
    /// A limit needs a controller the host does not give Confine, and
    /// <see cref="ResourceLimits.AllowUnenforced"/> is off.
    /// </exception>
    /// <exception cref="IOException">A cgroup could not be created or written for another reason.</exception>
    public static SandboxCgroup Create(CgroupHost host, ResourceLimits limits, string name)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(limits);
        CgroupName cgroupName = CgroupName.ForThisProcess(name);
        ValidateValues(limits);
        string? parent = NormalizeParent(limits.CgroupParent);

        var unenforced = new List<string>();
        var placements = new List<CgroupPlacement>();
        foreach ((CgroupController controller, string[] neededBy) in WantedControllers(limits))
        {
            CgroupPlacement placement = host.Place(controller, parent);
            if (placement.CanCreateChild)
            {
                placements.Add(placement);
                continue;
            }

            foreach (string key in neededBy)
            {
                Unavailable(limits, unenforced, key, placement.Name, placement.Problem!, placement.Fix!);
            }
        }

        ValidateAgainstHost(limits, placements);
        List<(DeviceIoLimit Limit, BlockDevice Device, int Index)> devices = ResolveDevices(limits);

        var sandbox = new SandboxCgroup(host, cgroupName, unenforced);
        try
        {
            foreach (IGrouping<CgroupHierarchy, CgroupPlacement> group in placements.GroupBy(p => p.Hierarchy!))
            {
                sandbox.Join(group.Key, [.. group], limits);
            }

            sandbox.ApplyLimits(limits, devices);
            return sandbox;
        }
        catch
        {
            sandbox.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The controllers the sandbox joins, each with the policy keys that need it; an empty list
    /// means the controller is joined only to account for the sandbox, so its absence is no error.
    /// </summary>
    private static IEnumerable<(CgroupController Controller, string[] NeededBy)> WantedControllers(
        ResourceLimits limits)
    {
        string[] memory = [
            .. limits.MemoryBytes is not null ? [ResourceKeys.Memory] : Array.Empty<string>(),
            .. limits.MemorySwapBytes is not null ? [ResourceKeys.MemorySwap] : Array.Empty<string>()];
        yield return (CgroupController.Memory, memory);

        if (limits.Cpus is not null)
        {
            yield return (CgroupController.Cpu, [ResourceKeys.Cpus]);
        }

        yield return (CgroupController.CpuAccounting, limits.CpuTime is not null ? [ResourceKeys.CpuTime] : []);

        if (limits.CpusetCpus is not null)
        {
            yield return (CgroupController.Cpuset, [ResourceKeys.CpusetCpus]);
        }

        yield return (CgroupController.Pids, limits.PidsLimit is not null ? [ResourceKeys.PidsLimit] : []);
        yield return (CgroupController.Io, limits.DeviceIo.IsDefaultOrEmpty ? [] : ["resources.device_io"]);
        yield return (CgroupController.Freezer, []);
    }

    /// <summary>Refuses the limit, or records it as unenforced when the policy allows that.</summary>
    private static void Unavailable(
        ResourceLimits limits, List<string> unenforced, string key, string controller, string reason, string fix)
    {
        if (!limits.AllowUnenforced)
        {
            throw new CgroupUnavailableException(key, controller, reason, fix);
        }

        unenforced.Add($"{key}: the {controller} controller is unavailable ({reason}; {fix})");
    }

    /// <summary>Checks what can be checked without the host: ranges, formats, combinations.</summary>
    internal static void ValidateValues(ResourceLimits limits)
    {
        if (limits.MemoryBytes is long memory && memory < MinimumMemoryBytes)
        {
            throw new PolicyException(ResourceKeys.Memory,
                $"{memory} bytes is below the least a sandbox can start in ({MinimumMemoryBytes >> 20} MiB)");
        }

        if (limits.MemorySwapBytes is long swap)
        {
            if (limits.MemoryBytes is not long withMemory)
            {
                throw new PolicyException(ResourceKeys.MemorySwap,
                    "a memory+swap limit needs a memory limit too (resources.memory)");
            }

            if (swap != -1 && swap < withMemory)
            {
                throw new PolicyException(ResourceKeys.MemorySwap,
                    $"memory+swap ({swap}) is less than the memory limit ({withMemory}); it counts both, "
                    + "so give at least the memory limit (equal means no swap), or -1 for unlimited swap");
            }
        }

        if (limits.Cpus is double cpus)
        {
            double least = (double)MinimumCpuQuotaMicroseconds / CpuPeriodMicroseconds;
            if (double.IsNaN(cpus) || cpus < least)
            {
                throw new PolicyException(ResourceKeys.Cpus,
                    $"{cpus.ToString(CultureInfo.InvariantCulture)} CPUs is too little: the least the kernel "
                    + $"can enforce is {least.ToString(CultureInfo.InvariantCulture)}");
            }
        }

        if (limits.CpusetCpus is string cpuset && (!CpuList.TryParse(cpuset, out CpuList list) || list.Count == 0))
        {
            throw new PolicyException(ResourceKeys.CpusetCpus,
                $"'{cpuset}' is not a CPU list such as 0-3,5");
        }

        if (limits.CpuTime is TimeSpan cpuTime && cpuTime <= TimeSpan.Zero)
        {
            throw new PolicyException(ResourceKeys.CpuTime, "the CPU time limit must be positive");
        }

        if (limits.PidsLimit is int pids && pids < MinimumPids)
        {
            throw new PolicyException(ResourceKeys.PidsLimit,
                $"{pids} is too few: the sandbox's init and the command already are {MinimumPids} tasks");
        }

        if (!limits.DeviceIo.IsDefaultOrEmpty)
        {
            for (int i = 0; i < limits.DeviceIo.Length; i++)
            {
                DeviceIoLimit device = limits.DeviceIo[i];
                CheckRate(device.ReadBps, ResourceKeys.DeviceIo(i, "read_bps"));
                CheckRate(device.WriteBps, ResourceKeys.DeviceIo(i, "write_bps"));
                CheckRate(device.ReadIops, ResourceKeys.DeviceIo(i, "read_iops"));
                CheckRate(device.WriteIops, ResourceKeys.DeviceIo(i, "write_iops"));
                if (device is { ReadBps: null, WriteBps: null, ReadIops: null, WriteIops: null })
                {
                    throw new PolicyException(ResourceKeys.DeviceIo(i, "device"),
                        $"the limit for '{device.Device}' sets no rate");
                }
            }
        }

        static void CheckRate(long? rate, string key)
        {
            if (rate is <= 0)
            {
                throw new PolicyException(key, "a rate must be positive");
            }
        }
    }

    /// <summary>
    /// Checks CPU numbers against what the parent cgroup may use: a limit above the CPUs there
    /// could never bind, and a cpuset naming a CPU outside the parent's would be refused.
    /// </summary>
    private static void ValidateAgainstHost(ResourceLimits limits, List<CgroupPlacement> placements)
    {
        CgroupPlacement? cpuset = placements.FirstOrDefault(p => p.Controller == CgroupController.Cpuset);
        CpuList available = AvailableCpus(cpuset);

        if (limits.Cpus is double cpus && available.Count > 0 && cpus > available.Count)
        {
            throw new PolicyException(ResourceKeys.Cpus,
                $"{cpus.ToString(CultureInfo.InvariantCulture)} CPUs is more than the {available.Count} "
                + $"this host has ({available})");
        }

        if (limits.CpusetCpus is string text && CpuList.TryParse(text, out CpuList wanted)
            && available.Count > 0 && !wanted.IsSubsetOf(available))
        {
            throw new PolicyException(ResourceKeys.CpusetCpus,
                $"CPU {wanted.Except(available)} is not available here; the sandbox may use {available}");
        }
    }

    /// <summary>The parent's effective cpuset when the sandbox gets one, else the host's online CPUs.</summary>
    private static CpuList AvailableCpus(CgroupPlacement? cpuset)
    {
        if (cpuset?.ParentDirectory is string parent)
        {
            string file = cpuset.Version == CgroupVersion.V2 ? "cpuset.cpus.effective" : "cpuset.effective_cpus";
            CpuList effective = CpuList.ParseKernel(CgroupFiles.TryReadText(Path.Join(parent, file))
                ?? CgroupFiles.TryReadText(Path.Join(parent, "cpuset.cpus")));
            if (effective.Count > 0)
            {
                return effective;
            }
        }

        CpuList online = CpuList.ParseKernel(CgroupFiles.TryReadText("/sys/devices/system/cpu/online"));
        return online.Count > 0 ? online : CpuList.ParseKernel($"0-{Environment.ProcessorCount - 1}");
    }

    private static List<(DeviceIoLimit Limit, BlockDevice Device, int Index)> ResolveDevices(ResourceLimits limits)
    {
        var devices = new List<(DeviceIoLimit, BlockDevice, int)>();
        if (limits.DeviceIo.IsDefaultOrEmpty)
        {
            return devices;
        }

        for (int i = 0; i < limits.DeviceIo.Length; i++)
        {
            DeviceIoLimit limit = limits.DeviceIo[i];
            devices.Add((limit, BlockDevice.Resolve(limit.Device, ResourceKeys.DeviceIo(i, "device")), i));
        }

        return devices;
    }

    /// <summary>
    /// The cgroup parent as a path in each hierarchy: leading slash, no empty, <c>.</c> or <c>..</c>
    /// parts (a parent must not climb out of the hierarchy the policy names).
    /// </summary>
    internal static string? NormalizeParent(string? parent)
    {
        if (parent is null)
        {
            return null;
        }

        string[] parts = parent.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Any(p => p is "." or ".."))
        {
            throw new PolicyException(ResourceKeys.CgroupParent, $"'{parent}' may not contain '.' or '..'");
        }

        return "/" + string.Join('/', parts);
    }

    /// <summary>
    /// Creates the sandbox's directory in one hierarchy. On v2 it first enables the needed
    /// controllers in the parent's <c>cgroup.subtree_control</c>; they stay enabled afterwards,
    /// as other children of the parent may rely on them by then.
    /// </summary>
    private void Join(CgroupHierarchy hierarchy, List<CgroupPlacement> placements, ResourceLimits limits)
    {
        string parentDirectory = placements[0].ParentDirectory!;
        var joined = new List<CgroupController>();
        foreach (CgroupPlacement placement in placements)
        {
            if (placement.NeedsEnabling)
            {
                string subtreeControl = Path.Join(parentDirectory, "cgroup.subtree_control");
                Interop.Error errno = CgroupFiles.Write(subtreeControl, "+" + placement.Name);
                bool movedSelf = false;
                // Moving this process is done only for a limit, never just to account for a sandbox.
                if (errno == Interop.Error.EBUSY && limits.CgroupParent is null && IsNeededByALimit(limits, placement.Controller)
                    && MoveSelfIntoLeaf(parentDirectory))
                {
                    movedSelf = true;
                    errno = CgroupFiles.Write(subtreeControl, "+" + placement.Name);
                }

                if (errno != Interop.Error.None)
                {
                    string reason = errno != Interop.Error.EBUSY
                        ? $"enabling it in {subtreeControl} failed: {CgroupSyscalls.Describe(errno)}"
                        : movedSelf
                            ? $"{parentDirectory} still holds other processes after Confine moved itself into "
                                + $"{SupervisorLeaf}/, so cgroup v2 refuses to enable {placement.Name} for its children"
                            : $"{parentDirectory} holds processes, so cgroup v2 refuses to enable {placement.Name} "
                                + "for its children";
                    SkipUnavailable(limits, placement, reason,
                        errno == Interop.Error.EBUSY
                            ? $"move the other processes into a leaf cgroup beneath {parentDirectory}, or set "
                                + "resources.cgroup_parent to an empty cgroup delegated to Confine"
                            : $"run as root or delegate the subtree, or add +{placement.Name} to {subtreeControl} "
                                + "beforehand");
                    continue;
                }
            }

            joined.Add(placement.Controller);
        }

        string directory = Path.Join(parentDirectory, Name);
        Interop.Error mkdir = CgroupSyscalls.Mkdir(directory, 0x1ED /* 0755 */);
        if (mkdir is Interop.Error.EACCES or Interop.Error.EPERM or Interop.Error.EROFS)
        {
            foreach (CgroupPlacement placement in placements.Where(p => joined.Contains(p.Controller)))
            {
                SkipUnavailable(limits, placement, $"mkdir {directory} failed: {CgroupSyscalls.Describe(mkdir)}",
                    "run as root or delegate the subtree");
            }

            return;
        }

        if (mkdir != Interop.Error.None)
        {
            throw new IOException($"cannot create cgroup {directory}: {CgroupSyscalls.Describe(mkdir)}");
        }

        AddMember(hierarchy, directory, joined);
    }

    /// <summary>
    /// The leaf Confine moves itself into when its own cgroup v2 cgroup must hand controllers to the
    /// sandboxes' cgroups. Its name cannot be taken for a sandbox's, so stale-cgroup removal leaves it.
    /// </summary>
    internal const string SupervisorLeaf = "confine-supervisor";

    /// <summary>
    /// Moves this process into <see cref="SupervisorLeaf"/> beneath <paramref name="ownDirectory"/>, its
    /// own cgroup. cgroup v2 lets only a cgroup without processes enable controllers for its
    /// children (the no-internal-process rule), so a service given a delegated cgroup (systemd's
    /// <c>Delegate=yes</c>) must first step into a leaf of it, as systemd's documentation asks of
    /// delegated managers. The move stays inside the delegated subtree. False when it cannot be done;
    /// the caller then reports the original refusal.
    /// </summary>
    private static bool MoveSelfIntoLeaf(string ownDirectory)
    {
        string leaf = Path.Join(ownDirectory, SupervisorLeaf);
        Interop.Error mkdir = CgroupSyscalls.Mkdir(leaf, 0x1ED /* 0755 */);
        if (mkdir is not (Interop.Error.None or Interop.Error.EEXIST))
        {
            return false;
        }

        // Confine's own helpers and the sandboxes being built or prepared ahead go too: they are its
        // processes, and any of them left behind would keep the cgroup busy.
        string procs = Path.Join(ownDirectory, "cgroup.procs");
        if (!CgroupHost.HoldsOnlyThisProcessTree(procs))
        {
            return false;
        }

        string leafProcs = Path.Join(leaf, "cgroup.procs");
        foreach (int pid in CgroupHost.ProcessesIn(procs) ?? [])
        {
            Interop.Error moved = CgroupFiles.Write(leafProcs, pid.ToString(CultureInfo.InvariantCulture));
            if (moved is not (Interop.Error.None or Interop.Error.ESRCH))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsNeededByALimit(ResourceLimits limits, CgroupController controller) =>
        WantedControllers(limits).Any(w => w.Controller == controller && w.NeededBy.Length > 0);

    /// <summary>A placement that failed at creation: an error when a limit needs it, else silently left out.</summary>
    private void SkipUnavailable(ResourceLimits limits, CgroupPlacement placement, string reason, string fix)
    {
        foreach ((CgroupController controller, string[] neededBy) in WantedControllers(limits))
        {
            if (controller == placement.Controller)
            {
                foreach (string key in neededBy)
                {
                    Unavailable(limits, _unenforced, key, placement.Name, reason, fix);
                }
            }
        }
    }
}
