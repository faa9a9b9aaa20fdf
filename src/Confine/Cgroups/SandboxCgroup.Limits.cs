using System.Globalization;
using System.Text;
using Confine.Native;

namespace Confine.Cgroups;

internal sealed partial class SandboxCgroup
{
    /// <summary>
    /// Writes the limits into the sandbox's cgroups. The cpuset comes first: a v1 cpuset cgroup
    /// with no CPUs or memory nodes refuses tasks (ENOSPC), and the helper writes the init's pid
    /// right after this returns.
    /// </summary>
    private void ApplyLimits(ResourceLimits limits, List<(DeviceIoLimit Limit, BlockDevice Device, int Index)> devices)
    {
        if (Of(CgroupController.Cpuset) is Member cpuset)
        {
            ApplyCpuset(cpuset, limits);
        }

        if (Of(CgroupController.Memory) is Member memory)
        {
            ApplyMemory(memory, limits);
        }

        if (Of(CgroupController.Cpu) is Member cpu && limits.Cpus is double cpus)
        {
            long quota = (long)Math.Round(cpus * CpuPeriodMicroseconds);
            string period = CpuPeriodMicroseconds.ToString(CultureInfo.InvariantCulture);
            if (cpu.Version == CgroupVersion.V2)
            {
                string max = $"{quota.ToString(CultureInfo.InvariantCulture)} {period}";
                WriteLimit(limits, cpu, "cpu.max", max, ResourceKeys.Cpus);
            }
            else
            {
                // The period first: a quota is checked against the period in force when it is written.
                WriteLimit(limits, cpu, "cpu.cfs_period_us", period, ResourceKeys.Cpus);
                string text = quota.ToString(CultureInfo.InvariantCulture);
                WriteLimit(limits, cpu, "cpu.cfs_quota_us", text, ResourceKeys.Cpus);
            }
        }

        if (Of(CgroupController.Pids) is Member pids && limits.PidsLimit is int pidsLimit)
        {
            string max = pidsLimit.ToString(CultureInfo.InvariantCulture);
            WriteLimit(limits, pids, "pids.max", max, ResourceKeys.PidsLimit);
        }

        if (Of(CgroupController.Io) is Member io)
        {
            foreach ((DeviceIoLimit limit, BlockDevice device, int index) in devices)
            {
                ApplyDeviceIo(io, limits, limit, device, index);
            }
        }
    }

    private void ApplyCpuset(Member cpuset, ResourceLimits limits)
    {
        string parent = Path.GetDirectoryName(cpuset.Directory)!;
        CpuList.TryParse(limits.CpusetCpus!, out CpuList cpus);
        WriteLimit(limits, cpuset, "cpuset.cpus", cpus.ToString(), ResourceKeys.CpusetCpus);

        // A v1 child starts with empty cpuset.mems (unless the parent set clone_children) and takes
        // no task until it has one; v2 leaves it empty to mean "the parent's".
        if (cpuset.Version == CgroupVersion.V1)
        {
            string? mems = CgroupFiles.TryReadText(Path.Join(parent, "cpuset.effective_mems"))?.Trim();
            if (string.IsNullOrEmpty(mems))
            {
                mems = CgroupFiles.TryReadText(Path.Join(parent, "cpuset.mems"))?.Trim();
            }

            if (string.IsNullOrEmpty(mems))
            {
                throw new IOException($"cannot copy cpuset.mems from {parent}: the parent has no memory nodes");
            }

            WriteLimit(limits, cpuset, "cpuset.mems", mems, ResourceKeys.CpusetCpus);
        }
    }

    /// <summary>
    /// Memory and memory+swap. <see cref="ResourceLimits.MemorySwapBytes"/> follows Docker's
    /// <c>--memory-swap</c>: the total of both, null for no swap at all, -1 for unlimited swap.
    /// v1 takes the total as it is (<c>memory.memsw.limit_in_bytes</c>); v2 takes the swap part
    /// alone (<c>memory.swap.max</c>).
    /// </summary>
    private void ApplyMemory(Member memory, ResourceLimits limits)
    {
        if (limits.MemoryBytes is not long bytes)
        {
            return;
        }

        string text = bytes.ToString(CultureInfo.InvariantCulture);
        bool v2 = memory.Version == CgroupVersion.V2;

        // v1 keeps memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every step; the new
        // cgroup starts unlimited in both, so the memory limit goes first.
        WriteLimit(limits, memory, v2 ? "memory.max" : "memory.limit_in_bytes", text, ResourceKeys.Memory);

        long? total = limits.MemorySwapBytes;
        if (total == -1)
        {
            return;
        }

        string swapFile = v2 ? "memory.swap.max" : "memory.memsw.limit_in_bytes";
        string swapValue = v2
            ? ((total ?? bytes) - bytes).ToString(CultureInfo.InvariantCulture)
            : (total ?? bytes).ToString(CultureInfo.InvariantCulture);

        if (!File.Exists(memory.File(swapFile)))
        {
            // Without swap accounting (v1 booted without swapaccount=1, or a kernel built without
            // it) the sandbox could swap past its memory limit; with no swap active it cannot.
            if (total is not null)
            {
                Unavailable(limits, _unenforced, ResourceKeys.MemorySwap, "memory",
                    $"{swapFile} does not exist (swap accounting is off)",
                    "boot the kernel with swap accounting (swapaccount=1 on cgroup v1)");
            }
            else if (HostHasSwap())
            {
                _unenforced.Add($"{ResourceKeys.MemorySwap}: {swapFile} does not exist (swap accounting is off), "
                    + "so the sandbox may swap beyond resources.memory");
            }

            return;
        }

        WriteLimit(limits, memory, swapFile, swapValue, total is null ? ResourceKeys.Memory : ResourceKeys.MemorySwap);
    }

    private static bool HostHasSwap()
    {
        string? swaps = CgroupFiles.TryReadText("/proc/swaps");
        return swaps is not null && swaps.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length > 1;
    }

    /// <summary>
    /// One device's rates. v1 has a file per rate (<c>blkio.throttle.write_bps_device</c>, ...);
    /// v2 takes them in one <c>io.max</c> line.
    /// </summary>
    /// <remarks>
    /// On v1, writes through the page cache are not throttled: writeback is done by the kernel's
    /// flusher threads and is not charged to the sandbox's blkio cgroup. Only direct I/O and reads
    /// are. v2 charges writeback to the cgroup that dirtied the pages (with the memory controller).
    /// </remarks>
    private void ApplyDeviceIo(Member io, ResourceLimits limits, DeviceIoLimit limit, BlockDevice device, int index)
    {
        string key = ResourceKeys.DeviceIo(index, "device");
        (string V1File, string V2Key, long? Value)[] rates =
        [
            ("blkio.throttle.read_bps_device", "rbps", limit.ReadBps),
            ("blkio.throttle.write_bps_device", "wbps", limit.WriteBps),
            ("blkio.throttle.read_iops_device", "riops", limit.ReadIops),
            ("blkio.throttle.write_iops_device", "wiops", limit.WriteIops),
        ];

        if (io.Version == CgroupVersion.V2)
        {
            var line = new StringBuilder(device.ToString());
            foreach ((_, string v2Key, long? value) in rates)
            {
                if (value is long rate)
                {
                    line.Append(CultureInfo.InvariantCulture, $" {v2Key}={rate}");
                }
            }

            WriteLimit(limits, io, "io.max", line.ToString(), key);
            return;
        }

        foreach ((string v1File, _, long? value) in rates)
        {
            if (value is long rate)
            {
                WriteLimit(limits, io, v1File, $"{device} {rate.ToString(CultureInfo.InvariantCulture)}", key);
            }
        }
    }

    /// <summary>
    /// Writes one limit. The kernel's EINVAL means the value is wrong (a policy error); a refusal
    /// to write at all means the controller is not really Confine's (unavailable); anything else
    /// is an I/O failure.
    /// </summary>
    private void WriteLimit(ResourceLimits limits, Member member, string file, string value, string key)
    {
        string path = member.File(file);
        Interop.Error errno = CgroupFiles.Write(path, value);
        switch (errno)
        {
            case Interop.Error.None:
                return;
            case Interop.Error.EINVAL or Interop.Error.ERANGE or Interop.Error.ENODEV:
                throw new PolicyException(
                    key, $"the kernel refused '{value}' in {path}: {CgroupSyscalls.Describe(errno)}");
            case Interop.Error.EACCES or Interop.Error.EPERM or Interop.Error.EROFS or Interop.Error.ENOENT:
                string controller = CgroupControllerNames.DisplayName(ControllerOf(file), member.Version);
                Unavailable(limits, _unenforced, key, controller,
                    $"cannot write {path}: {CgroupSyscalls.Describe(errno)}", "run as root or delegate the subtree");
                return;
            default:
                throw new IOException($"cannot write '{value}' to {path}: {CgroupSyscalls.Describe(errno)}");
        }
    }

    private static CgroupController ControllerOf(string file) => file.Split('.')[0] switch
    {
        "memory" => CgroupController.Memory,
        "cpu" => CgroupController.Cpu,
        "cpuset" => CgroupController.Cpuset,
        "pids" => CgroupController.Pids,
        "blkio" or "io" => CgroupController.Io,
        _ => CgroupController.CpuAccounting,
    };
}
