namespace Confine.Cgroups;

/// <summary>
/// The policy keys that errors about <see cref="ResourceLimits"/> name, so that a message points at
/// the line of the policy to change.
/// </summary>
internal static class ResourceKeys
{
    public const string Memory = "resources.memory";
    public const string MemorySwap = "resources.memory_swap";
    public const string Cpus = "resources.cpus";
    public const string CpusetCpus = "resources.cpuset_cpus";
    public const string CpuTime = "resources.cpu_time";
    public const string PidsLimit = "resources.pids_limit";
    public const string CgroupParent = "resources.cgroup_parent";

    /// <summary>The key of a field of the <paramref name="index"/>th device I/O limit.</summary>
    public static string DeviceIo(int index, string field) => $"resources.device_io[{index}].{field}";
}
