using System.Collections.Immutable;
using Confine.Native;

namespace Confine.Cgroups;

/// <summary>
/// Turns the <see cref="DeviceIoLimit.Writable"/> limit into one limit per disk behind the policy's
/// writable binds, so that a level can throttle "whatever the sandbox writes to" without knowing
/// the host's disks.
/// </summary>
internal static class WritableStorage
{
    /// <summary>
    /// <paramref name="limits"/> with its <c>writable</c> entry replaced by a copy for each disk that
    /// backs a writable bind and has no limit of its own; without writable binds on a disk, the entry
    /// is dropped.
    /// </summary>
    public static ResourceLimits Expand(ResourceLimits limits, ImmutableArray<BindMount> binds)
    {
        int at = -1;
        for (int i = 0; i < limits.DeviceIo.Length && at < 0; i++)
        {
            at = limits.DeviceIo[i].Device == DeviceIoLimit.Writable ? i : -1;
        }

        if (at < 0)
        {
            return limits;
        }

        DeviceIoLimit template = limits.DeviceIo[at];
        var named = new HashSet<BlockDevice>();
        for (int i = 0; i < limits.DeviceIo.Length; i++)
        {
            if (i != at)
            {
                named.Add(BlockDevice.Resolve(limits.DeviceIo[i].Device, ResourceKeys.DeviceIo(i, "device")));
            }
        }

        var expanded = ImmutableArray.CreateBuilder<DeviceIoLimit>();
        expanded.AddRange(limits.DeviceIo.RemoveAt(at));
        foreach (BindMount bind in binds.Where(b => b.Writable))
        {
            if (DiskBehind(bind.Source) is BlockDevice disk && named.Add(disk))
            {
                expanded.Add(template with { Device = disk.ToString() });
            }
        }

        return limits with { DeviceIo = expanded.ToImmutable() };
    }

    /// <summary>
    /// The whole disk holding <paramref name="path"/>, or null when its filesystem has no block device
    /// (tmpfs, overlay, 9p, NFS: the kernel gives those an anonymous device with major 0) or the path
    /// is gone.
    /// </summary>
    private static BlockDevice? DiskBehind(string path)
    {
        if (CgroupSyscalls.StatDevice(path, out _, out uint major, out uint minor) != Interop.Error.None || major == 0)
        {
            return null;
        }

        var device = new BlockDevice(major, minor);
        return Directory.Exists($"/sys/dev/block/{device}")
            ? BlockDevice.Resolve(device.ToString(), ResourceKeys.DeviceIo(0, "device"))
            : null;
    }
}
